"""The throughput benchmark runs end to end (on tiny synthetic data) and prints its ratios."""
from course_lib import bench


def test_bench_prints_samples_per_second_and_ratios(fake_fashion_mnist, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DATA_DIR", str(fake_fashion_mnist))
    bench.main(["--device", "cpu", "--steps", "3", "--warmup", "1", "--rounds", "1", "--workers", "0",
                "--batch-size", "8"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("MLP VAE", "conv VAE"))]
    assert len(rows) == 2
    for row in rows:
        speedup, overhead = row.split()[-2:]
        assert speedup.endswith("x") and float(speedup[:-1]) > 0
        assert overhead.endswith("%")

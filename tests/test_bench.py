"""The throughput benchmark runs end to end (on tiny synthetic data) and prints its ratios."""

import re

from course_lib.instructor import bench


def test_bench_prints_samples_per_second_and_ratios(fake_fashion_mnist, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DATA_DIR", str(fake_fashion_mnist))
    bench.main(
        ["--device", "cpu", "--steps", "3", "--warmup", "1", "--rounds", "1", "--workers", "0", "--batch-size", "8"]
    )
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("MLP VAE", "conv VAE"))]
    assert len(rows) == 2
    for row in rows:
        speedup, overhead = row.split()[-2:]
        assert speedup.endswith("x") and float(speedup[:-1]) > 0
        assert overhead.endswith("%")


def test_prepare_bench_prints_images_per_second_and_disk_space(capsys):
    bench.main(["prepare", "--images", "16", "--image-size", "160x120", "--rounds", "1", "--workers", "2"])
    out = capsys.readouterr().out
    rates = re.findall(r"^  (?:prepare|decode),.* ([\d,]+) images/s$", out, re.MULTILINE)
    assert len(rates) == 4 and all(int(rate.replace(",", "")) > 0 for rate in rates)
    assert "12.3 MB images" in out  # 64 x 64 x 3 bytes per image, per 1,000 images
    assert "COCO train2017 (118,287 images): 1,454 MB images" in out


def test_a_reference_epoch_is_timed_and_scaled_to_the_whole_epoch(fake_fashion_mnist, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(fake_fashion_mnist))
    seconds = bench.reference_epoch("cpu", steps=3, warmup=1)
    assert 0 < seconds < 3600  # 3 steps of a small conv VAE, times 938 / 3
    assert bench.REFERENCE_STEPS == 938

"""The throughput benchmark runs end to end (on tiny synthetic data) and prints its ratios."""

import re

from course_lib.instructor import bench


def test_bench_prints_samples_per_second_and_ratios(fake_fashion_mnist, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DATA_DIR", str(fake_fashion_mnist))
    bench.main(
        [
            "--device",
            "cpu",
            "--steps",
            "3",
            "--warmup",
            "1",
            "--rounds",
            "1",
            "--workers",
            "0",
            "--batch-size",
            "8",
            "--no-compile",
        ]
    )
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("MLP VAE", "conv VAE"))]
    assert len(rows) == 2
    for row in rows:
        speedup, overhead = row.split()[-2:]
        assert speedup.endswith("x") and float(speedup[:-1]) > 0
        assert overhead.endswith("%")
    peak = re.search(r"float32 matmul peak measured here: ([\d,.]+) GFLOP/s", out)
    eager = re.search(r"eager +([\d,.]+) GFLOP/s = +([\d.]+)% of peak \(([\d.]+) GFLOP per step\)", out)
    assert peak and eager and float(peak[1].replace(",", "")) > 0 and float(eager[1].replace(",", "")) > 0
    assert "compiled" not in out  # --no-compile


def test_step_flops_is_the_forward_and_backward_of_every_layer():
    import torch
    from torch import nn

    from course_lib.models import conv_vae, mlp_vae

    model, batch = mlp_vae(), 4
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    forward = sum(2 * batch * m.in_features * m.out_features for m in linears)
    first = next(m for m in linears if m.in_features == 784)  # its input is the image: no gradient needed
    expected = 3 * forward - 2 * batch * first.in_features * first.out_features  # weight + input gradients
    assert bench.step_flops(model, torch.rand(batch, 1, 28, 28)) == expected
    conv = conv_vae(latent_dim=32)
    assert bench.step_flops(conv, torch.rand(8, 1, 28, 28)) == 2 * bench.step_flops(conv, torch.rand(4, 1, 28, 28))


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

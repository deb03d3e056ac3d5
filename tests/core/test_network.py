import math

import torch
from torch import nn

from service.core.network import (
    Denoiser,
    DenoiserConfig,
    count_parameters,
    flops_per_row,
    infer,
    infer_with_density_gradient,
    inference_weights,
    sinusoidal_embedding,
    split_output,
)


def test_embedding_shape_and_known_values():
    v = torch.tensor([0.0, 1.0, 2.0])
    emb = sinusoidal_embedding(v, 128, 1.0)
    assert emb.shape == (3, 128)
    torch.testing.assert_close(emb[0, :64], torch.zeros(64))  # sin(0)
    torch.testing.assert_close(emb[0, 64:], torch.ones(64))  # cos(0)
    # frequency i is exp(-log(10000) i / 63): the first is 1, the last 1/10000
    torch.testing.assert_close(emb[1, 0], torch.tensor(math.sin(1.0)))
    torch.testing.assert_close(emb[2, 63], torch.tensor(math.sin(2.0 / 10000)))
    scaled = sinusoidal_embedding(v, 128, 25.0)
    torch.testing.assert_close(scaled[1, 0], torch.tensor(math.sin(25.0)))


def test_network_shapes_and_size():
    net = Denoiser()
    out = net(torch.randn(7, 2), torch.randint(0, 100, (7,)))
    assert out.shape == (7, 3)
    eps, log_p = split_output(out)
    assert eps.shape == (7, 2) and log_p.shape == (7,)
    # 384*256+256 + 3*(256*256+256) + 256*3+3
    assert count_parameters(net) == 98_560 + 197_376 + 771
    assert flops_per_row(DenoiserConfig(), cached_time=False) == 2 * (384 * 256 + 3 * 256**2 + 768)


def test_split_first_layer_equals_the_reference_concatenation():
    """Our first layer, applied in two pieces, is the reference's Linear(384, 256) on the concat."""
    torch.manual_seed(0)
    net = Denoiser()
    x, t = torch.randn(50, 2), torch.randint(0, 100, (50,))
    emb = torch.cat(
        [
            sinusoidal_embedding(x[:, 0], 128, 25.0),
            sinusoidal_embedding(x[:, 1], 128, 25.0),
            sinusoidal_embedding(t, 128, 1.0),
        ],
        dim=-1,
    )
    h = net.input(emb)
    for block in net.blocks:
        h = h + block.ff(torch.relu(h))
    reference = net.output(torch.relu(h))
    torch.testing.assert_close(net(x, t), reference, rtol=1e-5, atol=1e-5)
    table = net.time_hidden(torch.arange(100))
    torch.testing.assert_close(net(x, t, table[t]), reference, rtol=1e-5, atol=1e-5)
    assert isinstance(net.input, nn.Linear) and net.input.in_features == 384


def test_hand_written_gradient_matches_autograd():
    torch.manual_seed(1)
    net = Denoiser().double().requires_grad_(False)
    x = torch.randn(300, 2, dtype=torch.float64) * 2
    t = torch.randint(0, 100, (300,))
    t_hidden = net.time_hidden(t.double())
    xr = x.clone().requires_grad_(True)
    with torch.enable_grad():
        expected_out = net(xr, t, t_hidden)
        (expected,) = torch.autograd.grad(expected_out[:, 2].sum(), xr)
    out, grad = infer_with_density_gradient(inference_weights(net), x, t_hidden)
    torch.testing.assert_close(out, expected_out.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-10)


def test_inference_layout_computes_the_network():
    torch.manual_seed(2)
    net = Denoiser().requires_grad_(False)
    x, t = torch.randn(500, 2) * 2, torch.randint(0, 100, (500,))
    t_hidden = net.time_hidden(t)
    torch.testing.assert_close(
        infer(inference_weights(net), x, t_hidden), net(x, t, t_hidden), rtol=1e-5, atol=1e-5
    )


def test_a_rows_gradient_does_not_depend_on_its_place_in_the_batch():
    """Regression: the gradient's last product was a matrix-vector product, whose kernel sums
    the last row of an odd-sized batch in another order; a row's result must not care."""
    torch.manual_seed(3)
    net = Denoiser().requires_grad_(False)
    weights = inference_weights(net)
    for rows in (17, 33, 257):
        x = torch.randn(rows, 2) * 2
        t_hidden = net.time_hidden(torch.randint(0, 100, (rows,)))
        out, grad = infer_with_density_gradient(weights, x, t_hidden)
        out_flipped, grad_flipped = infer_with_density_gradient(
            weights, x.flip(0), t_hidden.flip(0)
        )
        torch.testing.assert_close(out_flipped.flip(0), out, rtol=0, atol=0)
        torch.testing.assert_close(grad_flipped.flip(0), grad, rtol=0, atol=0)

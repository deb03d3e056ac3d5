import math

import torch
from torch import nn

from service.core.network import (
    Denoiser,
    DenoiserConfig,
    count_parameters,
    flops_per_row,
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

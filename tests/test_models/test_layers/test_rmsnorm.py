import pytest
import torch

from mmssm.models.layers import RMSNorm


def test_rmsnorm_values_and_dtype():
    norm = RMSNorm(4, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1., 2., 3., 4.]))
    x = torch.tensor([[3., 4., 0., 0.]])
    rms = (25 / 4 + 1e-5)**0.5  # sqrt(mean(x^2) + eps)
    torch.testing.assert_close(
        norm(x), torch.tensor([[3 / rms, 8 / rms, 0., 0.]]))
    assert norm.weight.shape == (4, ) and len(list(norm.parameters())) == 1
    xb = torch.randn(2, 5, 4).bfloat16()
    out = norm(xb)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), norm(xb.float()), rtol=1e-2,
                               atol=1e-2)
    with pytest.raises(ValueError, match='RMSNorm'):
        norm(torch.randn(2, 3))

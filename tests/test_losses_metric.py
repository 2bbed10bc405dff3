import math

import pytest
import torch

from reidlab.losses import CrossEntropyLabelSmooth, TripletLoss


def test_label_smooth_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    target = torch.tensor([0])
    eps = 0.1
    z = math.exp(2.0) + 1.0 + math.exp(-1.0)
    logp = [2.0 - math.log(z), 0.0 - math.log(z), -1.0 - math.log(z)]
    q = [1 - eps + eps / 3, eps / 3, eps / 3]
    want = -sum(qi * li for qi, li in zip(q, logp))
    got = CrossEntropyLabelSmooth(3, eps)(logits, target)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_label_smooth_eps0_is_cross_entropy_and_checks_shapes():
    logits = torch.randn(5, 4)
    t = torch.tensor([0, 1, 2, 3, 0])
    assert CrossEntropyLabelSmooth(4, 0.0)(logits, t).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, t).item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        CrossEntropyLabelSmooth(4)(torch.randn(5, 3), t)


def test_triplet_batch_hard_hand_example():
    # 1-D features: pid 0 at 0 and 1, pid 1 at 3 and 5.
    f = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
    pids = torch.tensor([0, 0, 1, 1])
    # anchor 0: d_ap 1, d_an 3 -> relu(1-3+0.3)=0 ; anchor 1: d_ap 1, d_an 2 -> 0
    # anchor 2: d_ap 2, d_an 2 -> 0.3 ; anchor 3: d_ap 2, d_an 4 -> 0
    got = TripletLoss(margin=0.3)(f, pids)
    assert got.item() == pytest.approx(0.3 / 4, abs=1e-5)
    soft = TripletLoss(soft=True)(f, pids)
    want = sum(math.log1p(math.exp(a - n)) for a, n in [(1, 3), (1, 2), (2, 2), (2, 4)]) / 4
    assert soft.item() == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("soft", [False, True])
def test_triplet_degenerate_batches_are_finite(soft):
    loss = TripletLoss(0.3, soft=soft)
    f = torch.randn(4, 8, requires_grad=True)
    one_id = loss(f, torch.zeros(4, dtype=torch.long))  # no negatives at all
    one_id.backward()
    assert one_id.item() == 0.0 and torch.isfinite(f.grad).all()
    g = torch.randn(1, 8, requires_grad=True)
    single = loss(g, torch.tensor([3]))
    single.backward()
    assert torch.isfinite(single) and torch.isfinite(g.grad).all()
    h = torch.zeros(4, 8, requires_grad=True)  # all features equal: zero distances
    z = loss(h, torch.tensor([0, 0, 1, 1]))
    z.backward()
    assert torch.isfinite(z) and torch.isfinite(h.grad).all()
    if not soft:
        assert z.item() == pytest.approx(0.3, abs=1e-5)

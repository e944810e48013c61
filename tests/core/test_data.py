import pytest
import torch

from mechinterp_modadd import InputError, all_pairs, labels, mirror_partitions, random_split
from mechinterp_modadd.data import pair_index, split_from_pairs


def test_all_pairs_order_and_labels():
    P = all_pairs(5)
    assert P.shape == (25, 2)
    assert P[:6].tolist() == [[0, 0], [0, 1], [0, 2], [0, 3], [0, 4], [1, 0]]
    assert labels(P, 5).tolist()[:6] == [0, 1, 2, 3, 4, 1]
    assert torch.equal(pair_index(P, 5), torch.arange(25))


def test_split_is_seeded_by_its_own_generator():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = random_split(23, 0.75, seed=7)
    after = torch.rand(1)
    assert torch.equal(before, after), "random_split must not touch the global RNG"
    b = random_split(23, 0.75, seed=7)
    assert torch.equal(a.train_mask, b.train_mask)
    assert int(a.train_mask.sum()) == 396  # floor(0.75 * 529), as in the authors' split
    assert not torch.equal(a.train_mask, random_split(23, 0.75, seed=8).train_mask)
    assert bool(random_split(7, 1.0, 0).train_mask.all())


def test_mirror_partitions_cover_and_are_consistent():
    s = random_split(11, 0.6, seed=1)
    mp = mirror_partitions(s)
    total = mp.test_mirrored.int() + mp.test_unseen.int() + mp.train_both_orders.int() + mp.train_one_order.int()
    assert bool((total == 1).all())
    P = all_pairs(11)
    train = {tuple(x) for x in P[s.train_mask].tolist()}
    for (x, y) in P[mp.test_mirrored].tolist():
        assert (y, x) in train and (x, y) not in train
    for (x, y) in P[mp.train_one_order].tolist():
        assert (y, x) not in train and x != y
    # diagonal pairs in train are their own mirror
    for x in range(11):
        if (x, x) in train:
            assert bool(mp.train_both_orders[x * 11 + x])


def test_split_from_pairs_roundtrip():
    s = random_split(7, 0.5, seed=3)
    t = split_from_pairs(7, s.train_pairs.tolist())
    assert torch.equal(s.train_mask, t.train_mask)


@pytest.mark.parametrize("bad", [torch.tensor([[0, 7]]), torch.tensor([[-1, 2]]), torch.tensor([1, 2]),
                                 torch.tensor([[0.0, 1.0]]), torch.tensor([[1, 2, 3]])])
def test_bad_pairs_raise(bad):
    with pytest.raises(InputError):
        labels(bad, 7)

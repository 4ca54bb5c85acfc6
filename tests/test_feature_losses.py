"""Intermediate-knowledge losses against independent float64 references written from each paper's formula with plain
loops (no package helpers), plus the invariances their docstrings promise and the match-loss registry entries."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from bertdistill.losses import (
    FTParts,
    VIDParts,
    ab_loss,
    at_attention_loss,
    at_hidden_loss,
    cc_loss,
    fitnet_hint_loss,
    fsp_loss,
    ft_loss,
    ft_reconstruction_loss,
    get_match_loss,
    nst_loss,
    pkt_loss,
    rkd_angle_loss,
    rkd_distance_loss,
    rkd_loss,
    sp_loss,
    vid_loss,
)

LENGTHS = [5, 3, 5, 1, 4]  # real tokens per example (L = 5); example 3 has a single token


def data(*shape, seed=0, scale=1.0):
    """Float32-representable values, returned as float64 numpy (references); feed `t32` of them to the package."""
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32).astype(np.float64)


def make_mask(lengths, length):
    return np.array([[1.0 if i < n else 0.0 for i in range(length)] for n in lengths])


def t32(x):
    return torch.tensor(np.asarray(x), dtype=torch.float32)


def np_of(tensor):
    return tensor.detach().double().numpy()


def real(mask, b):
    return [i for i in range(mask.shape[1]) if mask[b, i] == 1]


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def huber(x):
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def seq_mean(per_token, mask):
    """per_token[b][l] averaged over each sequence's real tokens, then over the batch."""
    return sum(sum(per_token[b][i] for i in real(mask, b)) / len(real(mask, b)) for b in range(len(mask))) / len(mask)


# ----------------------------------------------------------------------------------------- relational references
def pool(x, mask):
    if x.ndim == 2:
        return [list(row) for row in x]
    return [[sum(x[b, i, h] for i in real(mask, b)) / len(real(mask, b)) for h in range(x.shape[2])]
            for b in range(x.shape[0])]  # fmt: skip


def ref_sp(s, t, mask):
    def gram(q):
        rows = [[dot(a, b) for b in q] for a in q]
        return [[v / norm(row) for v in row] for row in rows]

    gs, gt = gram(pool(s, mask)), gram(pool(t, mask))
    n = len(gs)
    return sum((gs[i][j] - gt[i][j]) ** 2 for i in range(n) for j in range(n)) / n**2


def ref_rkd_distance(s, t, mask):
    def distances(q):
        n = len(q)
        d = [[norm([a - b for a, b in zip(q[i], q[j])]) for j in range(n)] for i in range(n)]
        mu = sum(d[i][j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        return [[v / mu for v in row] for row in d]

    ds, dt = distances(pool(s, mask)), distances(pool(t, mask))
    n = len(ds)
    return sum(huber(ds[i][j] - dt[i][j]) for i in range(n) for j in range(n)) / n**2


def ref_rkd_angle(s, t, mask):
    def unit_from(q, j, i):  # unit vector from t_j to t_i; the zero vector stays 0
        v = [a - b for a, b in zip(q[i], q[j])]
        length = norm(v)
        return [x / length for x in v] if length > 0 else [0.0] * len(v)

    def cosines(q):
        n = len(q)
        return {(j, i, k): dot(unit_from(q, j, i), unit_from(q, j, k))
                for j in range(n) for i in range(n) for k in range(n)}  # fmt: skip

    cs, ct = cosines(pool(s, mask)), cosines(pool(t, mask))
    return sum(huber(cs[key] - ct[key]) for key in cs) / len(cs)


def ref_rkd(s, t, mask):
    return ref_rkd_distance(s, t, mask) + 2 * ref_rkd_angle(s, t, mask)


def ref_pkt(s, t, mask, eps=1e-7):
    def conditionals(q):
        units = [[x / (norm(v) + eps) for x in v] for v in q]
        kernel = [[(dot(a, b) + 1) / 2 for b in units] for a in units]
        return [[k / sum(row) for k in row] for row in kernel]

    ps, pt = conditionals(pool(s, mask)), conditionals(pool(t, mask))
    n = len(ps)
    return sum(pt[i][j] * math.log((pt[i][j] + eps) / (ps[i][j] + eps)) for i in range(n) for j in range(n)) / n**2


def ref_cc(s, t, mask, gamma=0.4, order=2):
    def kernel(q):
        units = [[x / norm(v) for x in v] for v in q]
        return [[sum(math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * dot(a, b) ** p
                     for p in range(order + 1)) for b in units] for a in units]  # fmt: skip

    ks, kt = kernel(pool(s, mask)), kernel(pool(t, mask))
    n = len(ks)
    return sum((ks[i][j] - kt[i][j]) ** 2 for i in range(n) for j in range(n)) / n**2


RELATIONAL = [
    (sp_loss, ref_sp),
    (rkd_distance_loss, ref_rkd_distance),
    (rkd_angle_loss, ref_rkd_angle),
    (rkd_loss, ref_rkd),
    (pkt_loss, ref_pkt),
    (cc_loss, ref_cc),
]
RELATIONAL_IDS = ["sp", "rkd_distance", "rkd_angle", "rkd", "pkt", "cc"]


@pytest.mark.parametrize("fn,ref", RELATIONAL, ids=RELATIONAL_IDS)
def test_relational_losses_match_the_formula(fn, ref):
    s, t, mask = data(5, 5, 4, seed=1), data(5, 5, 6, seed=2, scale=3.0), make_mask(LENGTHS, 5)
    s[2] *= 8.0  # an outlier: some RKD differences exceed 1 (the Huber loss's linear branch)
    assert fn(t32(s), t32(t), t32(mask)).item() == pytest.approx(ref(s, t, mask), rel=1e-5)
    # (B, H) inputs are taken as they are; without a mask every token counts.
    vs, vt = data(4, 3, seed=3), data(4, 5, seed=4)
    assert fn(t32(vs), t32(vt)).item() == pytest.approx(ref(vs, vt, None), rel=1e-5)
    assert fn(t32(s), t32(t)).item() == pytest.approx(ref(s, t, np.ones((5, 5))), rel=1e-5)


def test_rkd_case_exercises_the_linear_huber_branch():
    s, t, mask = data(5, 5, 4, seed=1), data(5, 5, 6, seed=2, scale=3.0), make_mask(LENGTHS, 5)
    s[2] *= 8.0

    def scaled_distances(q):
        d = [[norm(np.subtract(a, b)) for b in q] for a in q]
        return [[v / (sum(map(sum, d)) / 20) for v in row] for row in d]

    ds, dt = scaled_distances(pool(s, mask)), scaled_distances(pool(t, mask))
    assert max(abs(ds[i][j] - dt[i][j]) for i in range(5) for j in range(5)) > 1


@pytest.mark.parametrize("fn", [rkd_distance_loss, rkd_angle_loss, rkd_loss], ids=["distance", "angle", "rkd"])
@pytest.mark.parametrize("side", ["student", "teacher"])
def test_rkd_is_unchanged_when_one_side_is_scaled(fn, side):
    s, t, mask = data(4, 5, 4, seed=5), data(4, 5, 6, seed=6), make_mask([5, 2, 4, 3], 5)
    base = fn(t32(s), t32(t), t32(mask)).item()
    scaled = (3.7 * s, t) if side == "student" else (s, 3.7 * t)
    assert base > 1e-3
    assert fn(t32(scaled[0]), t32(scaled[1]), t32(mask)).item() == pytest.approx(base, rel=1e-5)


@pytest.mark.parametrize("fn", [sp_loss, pkt_loss, rkd_loss, cc_loss], ids=["sp", "pkt", "rkd", "cc"])
def test_relational_losses_are_unchanged_by_permuting_the_batch(fn):
    s, t, mask = data(5, 5, 4, seed=7), data(5, 5, 6, seed=8), make_mask(LENGTHS, 5)
    order = [3, 0, 4, 1, 2]
    base = fn(t32(s), t32(t), t32(mask)).item()
    assert base > 0
    assert fn(t32(s[order]), t32(t[order]), t32(mask[order])).item() == pytest.approx(base, rel=1e-5)


@pytest.mark.parametrize("fn", [fn for fn, _ in RELATIONAL], ids=RELATIONAL_IDS)
def test_relational_losses_are_zero_for_one_example(fn):
    for s, t, mask in [
        (t32(data(1, 4, 3, seed=9)), t32(data(1, 4, 5, seed=10)), t32(make_mask([2], 4))),
        (t32(data(1, 3, seed=11)), t32(data(1, 6, seed=12)), None),
    ]:
        loss = fn(s, t, mask)
        # zero up to rounding: CC's Taylor kernel of a row with itself is exp(0) only to the last bits on some CPUs
        assert not torch.isnan(loss) and abs(loss.item()) < 1e-10


# ------------------------------------------------------------------------------------- token-level references
def unit_neurons(x, mask, b):
    """Example b's hidden units, each its vector over the tokens (padding 0), L2-normalised."""
    vectors = [[x[b, i, h] if mask[b, i] == 1 else 0.0 for i in range(x.shape[1])] for h in range(x.shape[2])]
    return [[v / norm(vec) for v in vec] for vec in vectors]


def poly_kernel_mean(xs, ys):
    return sum(dot(x, y) ** 2 for x in xs for y in ys) / (len(xs) * len(ys))


def ref_nst(s, t, mask):
    total = 0.0
    for b in range(s.shape[0]):
        ns, nt = unit_neurons(s, mask, b), unit_neurons(t, mask, b)
        total += poly_kernel_mean(ns, ns) + poly_kernel_mean(nt, nt) - 2 * poly_kernel_mean(ns, nt)
    return total / s.shape[0]


def flow_matrix(start, end, tokens, b):
    return [[sum(start[b, i, p] * end[b, i, q] for i in tokens) / len(tokens) for q in range(end.shape[2])]
            for p in range(start.shape[2])]  # fmt: skip


def ref_fsp(student_pair, teacher_pair, mask):
    total = 0.0
    for b in range(mask.shape[0]):
        tokens = real(mask, b)
        gs, gt = flow_matrix(*student_pair, tokens, b), flow_matrix(*teacher_pair, tokens, b)
        entries = [(p, q) for p in range(len(gs)) for q in range(len(gs[0]))]
        total += sum((gs[p][q] - gt[p][q]) ** 2 for p, q in entries) / len(entries)
    return total / mask.shape[0]


def unit_activation_map(x, mask, b):
    q = [sum(x[b, i, h] ** 2 for h in range(x.shape[2])) if mask[b, i] == 1 else 0.0 for i in range(x.shape[1])]
    return [v / norm(q) for v in q]


def ref_at_hidden(s, t, mask):
    per_token = []
    for b in range(s.shape[0]):
        qs, qt = unit_activation_map(s, mask, b), unit_activation_map(t, mask, b)
        per_token.append([(a - c) ** 2 for a, c in zip(qs, qt)])
    return seq_mean(per_token, mask)


def unit_attention_map(scores, tokens, b):
    """{(q, k): mean over heads of softmax-over-real-keys^2}, real pairs only, L2-normalised over them."""
    heads = scores.shape[1]
    values = {}
    for q in tokens:
        probs_by_head = []
        for h in range(heads):
            exps = {k: math.exp(scores[b, h, q, k]) for k in tokens}
            probs_by_head.append({k: e / sum(exps.values()) for k, e in exps.items()})
        for k in tokens:
            values[q, k] = sum(probs[k] ** 2 for probs in probs_by_head) / heads
    length = norm(list(values.values()))
    return {key: v / length for key, v in values.items()}


def ref_at_attention(s, t, mask):
    total = 0.0
    for b in range(s.shape[0]):
        tokens = real(mask, b)
        ms, mt = unit_attention_map(s, tokens, b), unit_attention_map(t, tokens, b)
        total += sum((ms[key] - mt[key]) ** 2 for key in ms) / len(ms)
    return total / s.shape[0]


def test_nst_matches_the_formula():
    s, t, mask = data(5, 5, 3, seed=13), data(5, 5, 6, seed=14), make_mask(LENGTHS, 5)
    assert nst_loss(t32(s), t32(t), t32(mask)).item() == pytest.approx(ref_nst(s, t, mask), rel=1e-5)


def test_fsp_matches_the_formula():
    pair_s = (data(5, 5, 4, seed=15), data(5, 5, 3, seed=16))
    pair_t = (data(5, 5, 4, seed=17), data(5, 5, 3, seed=18, scale=2.0))
    mask = make_mask(LENGTHS, 5)
    got = fsp_loss(tuple(map(t32, pair_s)), tuple(map(t32, pair_t)), t32(mask)).item()
    assert got == pytest.approx(ref_fsp(pair_s, pair_t, mask), rel=1e-5)


def test_at_hidden_matches_the_formula():
    s, t, mask = data(5, 5, 3, seed=19), data(5, 5, 6, seed=20), make_mask(LENGTHS, 5)
    assert at_hidden_loss(t32(s), t32(t), t32(mask)).item() == pytest.approx(ref_at_hidden(s, t, mask), rel=1e-5)
    assert at_hidden_loss(t32(s), t32(t)).item() == pytest.approx(ref_at_hidden(s, t, np.ones((5, 5))), rel=1e-5)


def test_at_attention_matches_the_formula_with_different_head_counts():
    s, t, mask = data(5, 2, 5, 5, seed=21, scale=2.0), data(5, 3, 5, 5, seed=22, scale=2.0), make_mask(LENGTHS, 5)
    got = at_attention_loss(t32(s), t32(t), t32(mask)).item()
    assert got == pytest.approx(ref_at_attention(s, t, mask), rel=1e-5)
    assert at_attention_loss(t32(s), t32(t)).item() == pytest.approx(ref_at_attention(s, t, np.ones((5, 5))), rel=1e-5)


def softplus(x):
    return math.log1p(math.exp(x))


def test_vid_matches_the_formula_and_starts_at_variance_5():
    torch.manual_seed(0)
    parts = VIDParts(4, 6)
    np.testing.assert_allclose(parts.variance().detach().numpy(), 5.0, rtol=1e-6)
    with torch.no_grad():
        parts.log_scale.copy_(t32(data(6, seed=23)))
    s, t, mask = data(5, 5, 4, seed=24), data(5, 5, 6, seed=25), make_mask(LENGTHS, 5)
    mu = np_of(parts.regressor(t32(s)))
    var = [softplus(a) + parts.eps for a in parts.log_scale.tolist()]
    per_token = [[sum(0.5 * ((mu[b, i, n] - t[b, i, n]) ** 2 / var[n] + math.log(var[n])) for n in range(6)) / 6
                  for i in range(5)] for b in range(5)]  # fmt: skip
    assert vid_loss(t32(s), t32(t), t32(mask), parts).item() == pytest.approx(seq_mean(per_token, mask), rel=1e-5)


def test_ft_and_reconstruction_match_the_formula():
    torch.manual_seed(1)
    parts = FTParts(4, 6)
    s, t, mask = data(5, 5, 4, seed=26), data(5, 5, 6, seed=27), make_mask(LENGTHS, 5)
    fs, ft = np_of(parts.translator(t32(s))), np_of(parts.encoder(t32(t)))
    units = fs.shape[2]
    assert units == 3 == ft.shape[2]
    per_token = []
    for b in range(5):
        tokens = real(mask, b)
        ns = norm([fs[b, i, u] for i in tokens for u in range(units)])
        nt = norm([ft[b, i, u] for i in tokens for u in range(units)])
        per_token.append([sum(abs(fs[b, i, u] / ns - ft[b, i, u] / nt) for u in range(units)) / units
                          for i in range(5)])  # fmt: skip
    assert ft_loss(t32(s), t32(t), t32(mask), parts).item() == pytest.approx(seq_mean(per_token, mask), rel=1e-5)
    rec = np_of(parts.decoder(parts.encoder(t32(t))))
    per_token = [[sum((rec[b, i, h] - t[b, i, h]) ** 2 for h in range(6)) / 6 for i in range(5)] for b in range(5)]
    assert ft_reconstruction_loss(t32(t), t32(mask), parts).item() == pytest.approx(
        seq_mean(per_token, mask), rel=1e-5
    )


def make_connector(width_in, width_out, seed):
    torch.manual_seed(seed)
    connector = nn.Linear(width_in, width_out)
    with torch.no_grad():
        connector.weight.mul_(3.0)  # outputs on both sides of +-1, so every hinge branch is used
    return connector


def test_ab_matches_the_formula():
    connector = make_connector(4, 6, seed=2)
    s, t, mask = data(5, 5, 4, seed=28), data(5, 5, 6, seed=29), make_mask(LENGTHS, 5)
    t[0, 0, :3] = 0.0  # exactly on the boundary: the inactive side (t > 0 is false)
    w, bias = np_of(connector.weight), np_of(connector.bias)
    r = [[[dot(s[b, i], w[n]) + bias[n] for n in range(6)] for i in range(5)] for b in range(5)]
    flat = [v for rows in r for row in rows for v in row]
    assert min(flat) < -1 and max(flat) > 1 and any(abs(v) < 1 for v in flat)

    def hinge(rv, tv):
        return max(0.0, 1 - rv) ** 2 if tv > 0 else max(0.0, 1 + rv) ** 2

    per_token = [[sum(hinge(r[b][i][n], t[b, i, n]) for n in range(6)) / 6 for i in range(5)] for b in range(5)]
    assert ab_loss(t32(s), t32(t), t32(mask), connector).item() == pytest.approx(seq_mean(per_token, mask), rel=1e-5)


def test_fitnet_hint_is_the_per_element_mse_over_real_tokens():
    s, t, mask = data(5, 5, 6, seed=30), data(5, 5, 6, seed=31), make_mask(LENGTHS, 5)
    per_token = [[sum((s[b, i, h] - t[b, i, h]) ** 2 for h in range(6)) / 6 for i in range(5)] for b in range(5)]
    assert fitnet_hint_loss(t32(s), t32(t), t32(mask)).item() == pytest.approx(seq_mean(per_token, mask), rel=1e-5)


# -------------------------------------------------------------------------------------------------- padding
def pad(x, seed, token_axes=(1,), extra=3):
    """`x` (or a tuple of arrays) with `extra` garbage positions appended along each of `token_axes`."""
    if isinstance(x, tuple):
        return tuple(pad(part, seed + i, token_axes, extra) for i, part in enumerate(x))
    for axis in token_axes:
        shape = list(x.shape)
        shape[axis] = extra
        x = np.concatenate([x, data(*shape, seed=seed, scale=50.0)], axis=axis)
    return x


def to_torch(x):
    return tuple(map(t32, x)) if isinstance(x, tuple) else t32(x)


def padded_case(name):
    """(loss(s, t, mask), s, t, token axes)."""
    torch.manual_seed(3)
    vid, ft, ab = VIDParts(4, 6), FTParts(4, 6), make_connector(4, 6, seed=4)
    fns = {
        "at_hidden": at_hidden_loss,
        "nst": nst_loss,
        "vid": lambda s, t, m: vid_loss(s, t, m, vid),
        "ft": lambda s, t, m: ft_loss(s, t, m, ft),
        "ft_reconstruction": lambda s, t, m: ft_reconstruction_loss(t, m, ft),
        "ab": lambda s, t, m: ab_loss(s, t, m, ab),
        **dict(zip(RELATIONAL_IDS, [fn for fn, _ in RELATIONAL])),
    }
    if name == "at_attention":
        return at_attention_loss, data(5, 2, 5, 5, seed=32), data(5, 3, 5, 5, seed=33), (2, 3)
    if name == "fsp":
        pairs = [(data(5, 5, 6, seed=seed), data(5, 5, 3, seed=seed + 1)) for seed in (34, 36)]
        return fsp_loss, *pairs, (1,)
    return fns[name], data(5, 5, 4, seed=38), data(5, 5, 6, seed=39), (1,)


PADDED = ["at_hidden", "nst", "vid", "ft", "ft_reconstruction", "ab", "at_attention", "fsp", *RELATIONAL_IDS]


@pytest.mark.parametrize("name", PADDED)
def test_extra_padding_never_changes_a_loss(name):
    fn, s, t, axes = padded_case(name)
    mask = make_mask(LENGTHS, 5)
    padded_mask = np.concatenate([mask, np.zeros((5, 3))], axis=1)
    base = fn(to_torch(s), to_torch(t), t32(mask)).item()
    longer = fn(to_torch(pad(s, 40, axes)), to_torch(pad(t, 50, axes)), t32(padded_mask)).item()
    assert base > 1e-4
    assert longer == pytest.approx(base, rel=1e-5)


# ------------------------------------------------------------------------------------------------ gradients
def test_gradients_reach_the_learned_parts():
    s, t, mask = t32(data(5, 5, 4, seed=60)), t32(data(5, 5, 6, seed=61)), t32(make_mask(LENGTHS, 5))
    torch.manual_seed(5)
    vid = VIDParts(4, 6)
    vid_loss(s, t, mask, vid).backward()
    for name, param in vid.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name

    ft = FTParts(4, 6)
    student = s.clone().requires_grad_(True)
    ft_loss(student, t, mask, ft).backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in ft.encoder.parameters())
    for name, param in ft.translator.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert student.grad is not None and student.grad.abs().sum() > 0

    connector = make_connector(4, 6, seed=6)
    ab_loss(s, t, mask, connector).backward()
    for name, param in connector.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


# ------------------------------------------------------------------------------------------------- registry
def test_match_loss_registry_resolves_every_intermediate_loss():
    expected = {
        ("fitnet", "hidden"): fitnet_hint_loss,
        ("at", "hidden"): at_hidden_loss,
        ("at", "attention"): at_attention_loss,
        ("sp", "hidden"): sp_loss,
        ("rkd", "hidden"): rkd_loss,
        ("rkd_distance", "hidden"): rkd_distance_loss,
        ("rkd_angle", "hidden"): rkd_angle_loss,
        ("pkt", "hidden"): pkt_loss,
        ("cc", "hidden"): cc_loss,
        ("nst", "hidden"): nst_loss,
        ("fsp", "hidden"): fsp_loss,
        ("vid", "hidden"): vid_loss,
        ("ft", "hidden"): ft_loss,
        ("ab", "ffn"): ab_loss,
    }
    for (name, feature), fn in expected.items():
        spec = get_match_loss(name, feature)
        assert (spec.name, spec.feature, spec.fn) == (name, feature, fn)
    for name in RELATIONAL_IDS:
        with pytest.raises(ValueError, match="attention"):
            get_match_loss(name, "attention")
    for name in ["sp", "rkd", "rkd_distance", "rkd_angle", "pkt", "cc"]:
        assert (get_match_loss(name, "hidden").relational, get_match_loss(name, "hidden").width) == (True, "any")
    assert get_match_loss("fsp", "hidden").layer_pair
    learned = {("vid", "hidden"): VIDParts, ("ft", "hidden"): FTParts, ("ab", "ffn"): nn.Linear}
    for (name, feature), parts in learned.items():
        assert (get_match_loss(name, feature).width, get_match_loss(name, feature).build_parts) == ("parts", parts)
    pretrain = [get_match_loss(*key).pretrain for key in [("fitnet", "hidden"), ("ft", "hidden"), ("ab", "ffn")]]
    assert pretrain == ["student", "parts", "student"]
    assert get_match_loss("ft", "hidden").pretrain_fn is ft_reconstruction_loss
    assert not get_match_loss("nst", "hidden").relational and not get_match_loss("at", "hidden").relational

"""The loss core against values computed independently (by hand, numpy or loops) on tiny tensors,
plus gradient flow, teacher-free inference and config handling for every method."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from reckd.losses import Dims, HeadSpec, Outputs, Teacher, get, make_config, names, split_spec
from reckd.losses.common import gaussian_logits, pearson

LEVELS = (1.0, 2.0, 3.0, 4.0, 5.0)
CLASS = HeadSpec("class", num_classes=3)
RATING = HeadSpec("rating", levels=LEVELS)


class StagedMLP(nn.Module):
    """A tiny staged model: ``lower`` → s_l, ``upper`` → s_h, ``head`` → rating / logits.
    ``head_kind``: ``class`` (K logits), ``scalar`` (one rating) or ``levels`` (logits over LEVELS)."""

    def __init__(self, d_in: int, lower: int, upper: int, head_kind: str, k: int = 3) -> None:
        super().__init__()
        self.head_kind = head_kind
        self.lower = nn.Sequential(nn.Linear(d_in, lower), nn.ReLU())
        self.upper = nn.Sequential(nn.Linear(lower, upper), nn.ReLU())
        self.head = nn.Linear(upper, {"class": k, "scalar": 1, "levels": len(LEVELS)}[head_kind])
        self.register_buffer("levels", torch.tensor(LEVELS))
        if head_kind == "scalar":
            nn.init.constant_(self.head.bias, 3.0)

    def forward(self, x: Tensor) -> Outputs:
        s_l = self.lower(x)
        s_h = self.upper(s_l)
        out = self.head(s_h)
        if self.head_kind == "class":
            return Outputs(out.argmax(dim=1), s_l, s_h, out)
        if self.head_kind == "levels":
            return Outputs(torch.softmax(out, dim=1) @ self.levels, s_l, s_h, out)
        return Outputs(out.squeeze(1), s_l, s_h, None)


def frozen(model: nn.Module) -> nn.Module:
    return model.requires_grad_(False).eval()


def outputs(pred, lower, upper, logits=None) -> Outputs:
    t = lambda v: None if v is None else torch.tensor(v, dtype=torch.float32)  # noqa: E731
    return Outputs(t(pred), t(lower), t(upper), t(logits))


# ---------------------------------------------------------------- values by hand / direct formula
Z_S = [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]
Z_T = [[2.0, 0.5, 0.0], [0.0, 1.0, 1.0]]


def np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_kd_class_is_tau_squared_kl_batchmean():
    cfg = make_config("kd", {"tau": 2.0})
    method = get("kd")(cfg, Dims(2, 2), Dims(2, 2), CLASS)
    student, teacher = outputs([0, 1], [[0, 0]] * 2, [[0, 0]] * 2, Z_S), outputs([0, 1], [[0, 0]] * 2, [[0, 0]] * 2, Z_T)
    terms = method(student, Teacher(teacher), torch.tensor([0, 2]))
    p_s, p_t = np_softmax(np.array(Z_S) / 2), np_softmax(np.array(Z_T) / 2)
    kl = sum(p_t[i, j] * math.log(p_t[i, j] / p_s[i, j]) for i in range(2) for j in range(3)) / 2
    ce = -(math.log(np_softmax(np.array(Z_S))[0, 0]) + math.log(np_softmax(np.array(Z_S))[1, 2])) / 2
    assert terms["kd"].item() == pytest.approx(4.0 * kl, rel=1e-5)
    assert terms["task"].item() == pytest.approx(0.9 * ce, rel=1e-5)


def test_kd_rating_mse_and_kl_over_the_gaussian_view():
    student = outputs([3.0, 4.5], [[0.0]] * 2, [[0.0]] * 2, [[0, 0, 1, 0, 0], [0, 0, 0, 1, 2]])
    teacher = outputs([3.5, 4.0], [[0.0]] * 2, [[0.0]] * 2)
    labels = torch.tensor([3.0, 5.0])
    mse = get("kd")(make_config("kd", {}), Dims(1, 1), Dims(1, 1), RATING)(student, Teacher(teacher), labels)
    assert mse["kd"].item() == pytest.approx(((3.0 - 3.5) ** 2 + (4.5 - 4.0) ** 2) / 2)
    assert mse["task"].item() == pytest.approx(0.9 * (0 + 0.25) / 2)
    cfg = make_config("kd", {"rating_loss": "kl", "tau": 1.0, "s": 0.5})
    kl = get("kd")(cfg, Dims(1, 1), Dims(1, 1), RATING)(student, Teacher(teacher), labels)["kd"].item()
    want = 0.0
    for i, y_t in enumerate([3.5, 4.0]):
        q = np.array([math.exp(-((c - y_t) ** 2) / (2 * 0.25)) for c in LEVELS])
        q /= q.sum()
        p = np_softmax(np.array([student.logits[i].tolist()]))[0]
        want += (q * np.log(q / p)).sum() / 2
    assert kl == pytest.approx(want, rel=1e-5)
    assert get("kd").head_for(cfg) == "levels" and get("kd").head_for(make_config("kd", {})) == "any"


def test_dist_matches_numpy_pearson_with_tau_squared_and_beta_gamma():
    z_s = np.array([[1.0, 0.0, -1.0, 2.0], [0.5, 2.0, 0.0, 0.1], [0.0, 0.3, 1.0, -2.0]])
    z_t = np.array([[2.0, 0.5, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0], [1.0, -1.0, 0.5, 0.2]])
    tau, beta, gamma = 2.0, 1.5, 3.0
    y_s, y_t = np_softmax(z_s / tau), np_softmax(z_t / tau)
    inter = 1 - np.mean([np.corrcoef(y_s[i], y_t[i])[0, 1] for i in range(3)])
    intra = 1 - np.mean([np.corrcoef(y_s[:, j], y_t[:, j])[0, 1] for j in range(4)])
    head = HeadSpec("class", num_classes=4)
    cfg = make_config("dist", {"tau": tau, "beta": beta, "gamma": gamma})
    student = Outputs(torch.zeros(3), torch.zeros(3, 1), torch.zeros(3, 1), torch.tensor(z_s, dtype=torch.float32))
    teacher = Outputs(torch.zeros(3), torch.zeros(3, 1), torch.zeros(3, 1), torch.tensor(z_t, dtype=torch.float32))
    terms = get("dist")(cfg, Dims(1, 1), Dims(1, 1), head)(student, Teacher(teacher), torch.tensor([3, 1, 2]))
    assert terms["inter"].item() == pytest.approx(tau**2 * beta * inter, rel=1e-4)
    assert terms["intra"].item() == pytest.approx(tau**2 * gamma * intra, rel=1e-4)
    assert set(terms) == {"task", "inter", "intra"}


def test_pearson_eps_on_the_norm_product():
    a = torch.tensor([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    b = torch.tensor([[2.0, 4.0, 7.0], [1.0, 5.0, 0.0]])
    r = pearson(a, b, eps=1e-8)
    assert r[0].item() == pytest.approx(np.corrcoef([1, 2, 3], [2, 4, 7])[0, 1], rel=1e-6)
    assert r[1].item() == 0.0  # a constant row: 0 / (0 + eps), not NaN
    # eps enters the denominator once: (a·b) / (|a||b| + eps)
    big = pearson(torch.tensor([[1.0, -1.0]]), torch.tensor([[1.0, -1.0]]), eps=4.0)
    assert big.item() == pytest.approx(2.0 / (2.0 + 4.0))  # a·b = 2, |a||b| = 2


def test_dist_on_ratings_uses_levels_and_keeps_an_absolute_term():
    logits = [[0.0, 0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 2.0], [2.0, 1.0, 0.0, 0.0, 0.0]]
    student = outputs([3.0, 4.4, 1.6], [[0.0]] * 3, [[0.0]] * 3, logits)
    teacher = outputs([3.5, 4.0, 2.0], [[0.0]] * 3, [[0.0]] * 3)
    cfg = make_config("dist", {"s": 1.0})
    terms = get("dist")(cfg, Dims(1, 1), Dims(1, 1), RATING)(student, Teacher(teacher), torch.tensor([3.0, 5.0, 1.0]))
    y_s = np_softmax(np.array(logits))
    y_t = np_softmax(np.array([[-((c - t) ** 2) / 2 for c in LEVELS] for t in [3.5, 4.0, 2.0]]))
    inter = 1 - np.mean([np.corrcoef(y_s[i], y_t[i])[0, 1] for i in range(3)])
    assert terms["inter"].item() == pytest.approx(2.0 * inter, rel=1e-4)
    assert terms["match"].item() == pytest.approx((0.25 + 0.16 + 0.16) / 3, rel=1e-5)
    assert get("dist").student_head == "levels"


def test_fitnet_hint_is_mse_of_the_regressed_state():
    method = get("fitnet")(make_config("fitnet", {"w_hint": 2.0}), Dims(2, 2), Dims(3, 3), CLASS)
    with torch.no_grad():
        method.regressor.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        method.regressor.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    student = outputs([0, 0], [[0, 0]] * 2, [[1.0, 2.0], [0.0, -1.0]], Z_S)
    teacher = outputs([0, 0], [[0, 0, 0]] * 2, [[1.0, 1.0, 4.0], [0.0, 0.0, 0.0]], Z_T)
    terms = method(student, Teacher(teacher), torch.tensor([0, 1]))
    # r(s_h) = [1, 2, 4] and [0, -1, 0]: squared errors 0+1+0 and 0+1+0 over 6 elements
    assert terms["hint"].item() == pytest.approx(2.0 * 2 / 6)


def test_hybrid_is_kd_plus_the_fitnet_hint():
    overrides = {"tau": 2.0, "w_kd": 0.5, "w_hint": 3.0}
    hybrid = get("hybrid")(make_config("hybrid", overrides), Dims(2, 2), Dims(3, 3), CLASS)
    kd = get("kd")(make_config("kd", {"tau": 2.0, "w_kd": 0.5}), Dims(2, 2), Dims(3, 3), CLASS)
    torch.manual_seed(0)
    fitnet = get("fitnet")(make_config("fitnet", {"w_hint": 3.0}), Dims(2, 2), Dims(3, 3), CLASS)
    hybrid.load_state_dict(fitnet.state_dict())  # the same regressor r (fitnet's state, fitnet's names)
    student = outputs([0, 0], [[0, 0]] * 2, [[1.0, 2.0], [0.0, -1.0]], Z_S)
    teacher = Teacher(outputs([0, 0], [[0, 0, 0]] * 2, [[1.0, 1.0, 4.0], [0.0, 0.0, 0.0]], Z_T))
    labels = torch.tensor([0, 1])
    terms, kd_terms, fitnet_terms = (m(student, teacher, labels) for m in (hybrid, kd, fitnet))
    assert list(terms) == ["task", "kd", "hint"]
    assert torch.equal(terms["task"], kd_terms["task"]) and torch.equal(terms["kd"], kd_terms["kd"])
    assert torch.equal(terms["hint"], fitnet_terms["hint"])
    # the options are kd's and fitnet's, with kd's w_task default; a bad kd option is refused the same way
    kd_fields, fitnet_fields = dataclasses.asdict(make_config("kd")), dataclasses.asdict(make_config("fitnet"))
    assert dataclasses.asdict(make_config("hybrid")) == {**fitnet_fields, **kd_fields}
    with pytest.raises(ValueError, match="'rating_loss'.*found 'l1'"):
        make_config("hybrid", {"rating_loss": "l1"})
    assert get("hybrid").head_for(make_config("hybrid", {"rating_loss": "kl"})) == "levels"


def identity_talking(rounds: int, interact: bool = True):
    cfg = make_config("talking", {"module": "linear", "message": 2, "norm_messages": False, "rounds": rounds,
                                  "interact": interact, "w_mc": 1.0, "w_sc": 1.0})
    method = get("talking")(cfg, Dims(2, 2), Dims(2, 2), CLASS)
    with torch.no_grad():
        for module in method.modules():
            if isinstance(module, nn.Linear):
                module.weight.copy_(torch.eye(2))
                module.bias.zero_()
    return method


def test_talking_terms_by_hand_with_identity_modules():
    s_l, s_h = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 3.0]])
    t_l, t_h = torch.tensor([[0.0, 1.0]]), torch.tensor([[2.0, 2.0]])
    student = Outputs(torch.tensor([0]), s_l, s_h, torch.tensor([[1.0, 0.0, 0.0]]))
    teacher = Teacher(Outputs(torch.tensor([0]), t_l, t_h, None), upper=lambda x: 2 * x)
    mse = lambda a, b: ((a - b) ** 2).mean().item()  # noqa: E731
    one = identity_talking(rounds=1)(student, teacher, torch.tensor([0]))
    # m_S = s_l; t̃_h = 2 s_l; m_T = 2 s_l; s̃_h = 2 s_l
    assert one["interact"].item() == pytest.approx(mse(s_h, 2 * s_l))
    assert one["mc"].item() == pytest.approx(mse(s_l, t_h))
    assert one["sc"].item() == pytest.approx(mse(s_l, t_l) + mse(t_h, s_h))
    two = identity_talking(rounds=2)(student, teacher, torch.tensor([0]))
    assert two["interact"].item() == pytest.approx((mse(s_h, 2 * s_l) + mse(s_h, 4 * s_l)) / 2)
    silent = identity_talking(rounds=1, interact=False)(student, Teacher(teacher.outputs), torch.tensor([0]))
    assert set(silent) == {"task", "mc", "sc"}


def test_talking_messages_are_layer_normalised():
    method = get("talking")(make_config("talking", {"message": 8}), Dims(4, 5), Dims(6, 7), CLASS)
    m = method.enc_s(torch.randn(10, 4, generator=torch.Generator().manual_seed(0)) * 50)
    assert m.mean(dim=1).abs().max().item() < 1e-5
    assert m.var(dim=1, unbiased=False).mean().item() == pytest.approx(1.0, abs=1e-3)


def moe_setup(seed: int = 0):
    """A class-head MoE-KD with a fixed frozen teacher head and teacher outputs for prepare()."""
    gen = torch.Generator().manual_seed(seed)
    head = HeadSpec("class", num_classes=3)
    teacher_head = frozen(nn.Linear(4, 3))
    t_h = torch.randn(20, 4, generator=gen)
    teacher_train = Outputs(torch.zeros(20), torch.zeros(20, 1), t_h, teacher_head(t_h))
    torch.manual_seed(seed)
    method = get("moe")(make_config("moe", {}), Dims(2, 5), Dims(1, 4), head)
    method.prepare(teacher_train, teacher_head)
    student = Outputs(torch.zeros(4), torch.zeros(4, 2), torch.randn(4, 5, generator=gen),
                      torch.randn(4, 3, generator=gen, requires_grad=True))
    return method, teacher_head, teacher_train, student, torch.tensor([0, 2, 1, 2])


def test_moe_prototypes_are_teacher_weighted_means():
    method, _, teacher_train, _, _ = moe_setup()
    p = torch.softmax(teacher_train.logits, dim=1)
    for k in range(3):
        want = sum(p[i, k] * teacher_train.upper[i] for i in range(20)) / p[:, k].sum()
        assert torch.allclose(method.prototypes[k], want, atol=1e-5)


def test_moe_e_step_is_bayes_and_m_step_is_negative_expected_complete_log_likelihood():
    method, teacher_head, _, student, labels = moe_setup()
    with torch.no_grad():
        bias = method.psi(method.prototypes)  # b_k
        gates = torch.softmax(teacher_head(method.project(student.upper)), dim=1)  # π_k(x)
    lik = torch.zeros(4, 3)  # P(y_i | k, x_i) by an explicit loop
    for i in range(4):
        for k in range(3):
            e = torch.exp(student.logits[i].detach() + bias[k])
            lik[i, k] = e[labels[i]] / e.sum()
    bayes = lik * gates / (lik * gates).sum(dim=1, keepdim=True)
    joint = method.log_likelihood(student, labels) + method.log_gates(student.upper)
    q = method.posterior(joint, None)
    assert torch.allclose(q, bayes, atol=1e-6)
    t_h = torch.randn(4, 4, generator=torch.Generator().manual_seed(5))
    terms = method(student, Teacher(Outputs(torch.zeros(4), torch.zeros(4, 1), t_h, None)), labels)
    align = ((method.project(student.upper) - t_h) ** 2).mean() / method.t_h_var
    assert terms["align"].item() == pytest.approx(3.0 * align.item(), rel=1e-5)
    m_step = -(bayes * (lik.log() + gates.log())).sum(dim=1).mean()
    assert terms["em"].item() == pytest.approx(m_step.item(), rel=1e-5)
    # EM identity: at q = posterior, the M-step gradient equals that of −log P(y|x) (marginal)
    (g_em,) = torch.autograd.grad(terms["em"], student.logits)
    (g_nll,) = torch.autograd.grad(-torch.logsumexp(joint, dim=1).mean(), student.logits)
    assert torch.allclose(g_em, g_nll, atol=1e-6)


def test_moe_predicts_the_marginal_without_the_teacher():
    method, teacher_head, _, student, _ = moe_setup()
    with torch.no_grad():
        gates = torch.softmax(teacher_head(method.project(student.upper)), dim=1)
        experts = torch.softmax(student.logits[:, None, :] + method.psi(method.prototypes)[None], dim=2)
        marginal = (gates[:, :, None] * experts).sum(dim=1)
        del teacher_head  # the method keeps its own frozen copy of the (small) head
        assert torch.equal(method.predict(student), marginal.argmax(dim=1))


def test_moe_rating_gaussian_experts_and_gaussian_gates():
    teacher_head = frozen(nn.Linear(3, 1))
    t_h = torch.randn(30, 3, generator=torch.Generator().manual_seed(1))
    teacher_train = Outputs(teacher_head(t_h).squeeze(1), torch.zeros(30, 1), t_h, None)
    method = get("moe")(make_config("moe", {"sigma": 0.7, "s": 0.5}), Dims(2, 4), Dims(1, 3), RATING)
    method.prepare(teacher_train, teacher_head)
    s_h = torch.randn(2, 4, generator=torch.Generator().manual_seed(2))
    student = Outputs(torch.tensor([2.5, 4.0]), torch.zeros(2, 2), s_h, None)
    labels = torch.tensor([3.0, 5.0])
    with torch.no_grad():
        r = teacher_head(method.project(s_h)).squeeze(1)
        gates = torch.tensor([[math.exp(-((c - r[i].item()) ** 2) / 0.5) for c in LEVELS] for i in range(2)])
        gates /= gates.sum(dim=1, keepdim=True)
        means = student.prediction[:, None] + method.psi(method.prototypes)[:, 0][None]
        dens = torch.exp(-((labels[:, None] - means) ** 2) / (2 * 0.49)) / (0.7 * math.sqrt(2 * math.pi))
        joint = method.log_likelihood(student, labels) + method.log_gates(s_h)
        assert torch.allclose(method.posterior(joint, None), dens * gates / (dens * gates).sum(1, keepdim=True), atol=1e-5)
        assert torch.allclose(method.predict(student), (gates * means).sum(dim=1), atol=1e-5)


def test_none_and_the_gaussian_view():
    student = outputs([2.0, 6.0], [[0.0]] * 2, [[0.0]] * 2)
    terms = get("none")(make_config("none", {}), Dims(1, 1), Dims(1, 1), RATING)(student, None, torch.tensor([3.0, 5.0]))
    assert terms == {"task": pytest.approx(torch.tensor(1.0))}  # ((2−3)² + (6−5)²) / 2
    g = gaussian_logits(torch.tensor([3.0]), torch.tensor(LEVELS), s=1.0)
    assert torch.allclose(g, torch.tensor([[-2.0, -0.5, 0.0, -0.5, -2.0]]))


# ---------------------------------------------------------------- gradients, frozen teacher, inference
def build(name: str, student_head: str, overrides: dict | None = None, seed: int = 0):
    """Student (``class``, ``scalar`` or ``levels`` head), frozen teacher (a scalar head on ratings),
    and the method with ``prepare()`` done, plus a batch."""
    torch.manual_seed(seed)
    head = CLASS if student_head == "class" else RATING
    student = StagedMLP(4, 6, 5, student_head)
    teacher = frozen(StagedMLP(4, 8, 7, "class" if student_head == "class" else "scalar"))
    method = get(name)(make_config(name, overrides or {}), Dims(6, 5), Dims(8, 7), head)
    x = torch.randn(64, 4)
    with torch.no_grad():
        method.prepare(teacher(x), teacher.head)
    labels = torch.randint(0, 3, (16,)) if student_head == "class" else torch.randint(1, 6, (16,)).float()
    return student, teacher, method, x[:16], labels


CASES = [(n, k, {}) for n in ["none", "kd", "fitnet", "hybrid", "dist", "moe", "talking"]
         for k in ["class", "scalar", "levels"] if not (n == "dist" and k == "scalar")]
CASES += [("talking", "class", {"rounds": 3, "module": "linear"}), ("talking", "scalar", {"interact": False}),
          ("moe", "levels", {"rating_experts": "categorical"}), ("kd", "levels", {"rating_loss": "kl"}),
          ("moe", "class", {"gating": "scratch", "prototypes": "scratch"}), ("moe", "scalar", {"gating": "uniform"})]


@pytest.mark.parametrize("name,student_head,overrides", CASES)
def test_gradients_reach_student_and_extras_never_the_teacher(name, student_head, overrides):
    student, teacher, method, x, labels = build(name, student_head, overrides)
    before = copy.deepcopy(teacher.state_dict())
    optimizer = torch.optim.Adam(list(student.parameters()) + list(method.parameters()), lr=1e-2)
    for _ in range(2):
        out = student(x)
        with torch.no_grad():
            t_out = teacher(x)
        terms = method(out, Teacher(t_out, upper=teacher.upper, head=teacher.head), labels)
        assert "task" in terms and all(v.dim() == 0 and torch.isfinite(v) for v in terms.values())
        optimizer.zero_grad()
        sum(terms.values()).backward()
        for p_name, p in student.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient on student {p_name}"
        for p_name, p in method.named_parameters():
            if p.requires_grad:
                assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient on extra {p_name}"
        optimizer.step()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    if name in ("fitnet", "hybrid", "talking", "moe"):
        assert sum(p.numel() for p in method.parameters() if p.requires_grad) > 0
    # teacher-free inference: the student's own prediction (MoE-KD: its mixture, from G, Ψ, μ, head copy)
    with torch.no_grad():
        pred = method.predict(student(x))
        if name != "moe":
            assert torch.equal(pred, student(x).prediction)
        assert pred.shape == (16,)


# ---------------------------------------------------------------- config handling
def test_make_config_coerces_and_names_bad_keys():
    cfg = make_config("talking", {"rounds": "3", "interact": "false", "message": 16, "w_mc": "0.5"})
    assert dataclasses.asdict(cfg)["rounds"] == 3 and cfg.interact is False and cfg.w_mc == 0.5
    with pytest.raises(KeyError, match="unknown option 'taux'.*tau"):
        make_config("kd", {"taux": 1})
    with pytest.raises(ValueError, match="'rounds': expected int, found '2.5'"):
        make_config("talking", {"rounds": "2.5"})
    with pytest.raises(ValueError, match="'gating'.*found 'random'"):
        make_config("moe", {"gating": "random"})
    with pytest.raises(KeyError, match="unknown method 'fitnets'"):
        make_config("fitnets", {})
    assert split_spec("dist+aug") == ("dist", True) and split_spec("kd") == ("kd", False)
    with pytest.raises(ValueError, match="NAME\\+aug"):
        split_spec("kd+foo")
    assert names() == ["dist", "fitnet", "hybrid", "kd", "moe", "none", "talking"]
    assert get("talking").needs_live_teacher and not get("none").needs_teacher

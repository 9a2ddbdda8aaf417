"""Self-checks of the PyTorch reference (megalodon_ref.py), run before it is trusted as an oracle.

Every check is in float64 on the CPU and compares two independent computations:
  (a) autograd gradients vs finite differences (torch.autograd.gradcheck on the components with their
      incoming states, and on a selection of model parameters; directional derivatives for all of them);
  (b) CEMA by the step-by-step recurrence == CEMA by the explicit causal convolution, with non-zero h_in;
  (c) TimestepNorm == mean/variance of all scalars seen so far, computed from scratch (with a prior state);
  (d) a sequence processed in two pieces with carried state == the whole (TimestepNorm, CEMA, the model,
      including the gradients that flow back through the carried state);
  (e) parameter counts of the presets == the table of docs/megalodon.md §4.1;
  plus the initialisation of §2.9, RoPE and the chunked attention against direct formulations, causality.

Usage: python3 tests/reference/test_reference_selfcheck.py [-v]   (or pytest on this file)
"""

import cmath
import math
import os
import sys
import unittest

import torch

sys.dont_write_bytecode = True  # no __pycache__ next to the sources
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import megalodon_ref as ref  # noqa: E402

F64 = torch.float64


def tiny_model(seed=0, **overrides):
    """The `test` preset with perturbed parameters (every path active), float64."""
    cfg = ref.make_config("test", overrides)
    params = ref.perturb_zero_initialised(ref.init_parameters(cfg, seed), seed + 1)
    return cfg, params


def random_ids(cfg, batch, length, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg["vocab_size"], (batch, length), generator=gen)


def rel_err(a, b):
    return float((a - b).norm() / b.norm().clamp(min=1e-300))


def cema_inputs(B, L, D, N, seed, with_state=True):
    gen = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=gen, dtype=F64)
    x = randn(B, L, D)
    alpha, delta = randn(D, N, 1) * 0.5, randn(D, N, 1) * 0.5
    theta, gamma, omega = randn(D, 1, 1), randn(D, N, 2), randn(D, 1) * 0.3
    h_in = randn(B, D, N, 2) if with_state else None
    return x, alpha, delta, theta, gamma, omega, h_in


def norm_inputs(B, L, D, G, seed, count=3):
    gen = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=gen, dtype=F64)
    x = randn(B, L, D) * 1.5 + 0.3
    weight, bias = randn(D) * 0.3, randn(D) * 0.3
    state = (torch.full((B,), count, dtype=torch.int64), randn(B, G),
             0.5 + torch.rand(B, G, generator=gen, dtype=F64))
    return x, weight, bias, state


class GradientChecks(unittest.TestCase):
    """(a) autograd vs finite differences."""

    def test_timestep_norm_gradcheck_with_incoming_state(self):
        x, weight, bias, (count, mean, var) = norm_inputs(2, 5, 8, 2, seed=11)

        def f(x, weight, bias, mean, var):
            y, (_, mu, v) = ref.timestep_norm(x, weight, bias, 2, 1e-5, (count, mean, var))
            return y, mu, v

        inputs = [t.clone().requires_grad_(True) for t in (x, weight, bias, mean, var)]
        self.assertTrue(torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-8, rtol=1e-6))

    def test_cema_gradcheck_with_incoming_state(self):
        inputs = [t.clone().requires_grad_(True) for t in cema_inputs(2, 6, 3, 2, seed=12)]
        self.assertTrue(torch.autograd.gradcheck(lambda *a: ref.cema(*a), inputs, eps=1e-6, atol=1e-8,
                                                 rtol=1e-6))

    def test_model_gradcheck_on_selected_parameters(self):
        cfg, params = tiny_model(seed=21)
        ids, targets = random_ids(cfg, 2, 16, 22), random_ids(cfg, 2, 16, 23)
        names = ["layers.0.mega.cema.alpha", "layers.0.mega.cema.delta", "layers.1.mega.cema.theta",
                 "layers.0.mega.cema.gamma", "layers.1.mega.cema.omega", "layers.0.mega.timenorm.weight",
                 "layers.1.mega.timenorm.bias", "layers.0.mega.rmsnorm.weight", "layers.1.mega.wz.bias",
                 "layers.0.mega.gamma", "layers.1.mega.beta", "layers.0.mega.wv.bias", "layers.1.mega.wr.bias",
                 "layers.0.mega.wh1.bias", "layers.1.nffn.norm.weight", "layers.0.nffn.norm.bias",
                 "output.final_norm.weight", "output.final_norm.bias"]

        def f(*tensors):
            p = dict(params)
            p.update(zip(names, tensors))
            return ref.cross_entropy(ref.forward(p, cfg, ids)[0], targets)

        inputs = [params[n].clone().requires_grad_(True) for n in names]
        self.assertTrue(torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-8, rtol=1e-6))

    def check_directional_derivatives(self, cfg, params, length):
        ids, targets = random_ids(cfg, 2, length, 31), random_ids(cfg, 2, length, 32)
        _, _, grads = ref.loss_and_gradients(params, cfg, ids, targets)
        self.assertEqual(list(grads.keys()), list(ref.parameter_shapes(cfg).keys()))
        gen = torch.Generator().manual_seed(33)
        h = 1e-5
        for name, g in grads.items():
            with self.subTest(name=name):
                v = torch.randn(g.shape, generator=gen, dtype=F64)
                v /= v.norm()

                def loss_at(step):
                    p = dict(params)
                    p[name] = params[name] + step * v
                    return float(ref.cross_entropy(ref.forward(p, cfg, ids)[0], targets))

                numeric = (loss_at(h) - loss_at(-h)) / (2 * h)
                analytic = float((g * v).sum())
                self.assertLess(abs(numeric - analytic), 1e-6 * float(g.norm()) + 1e-9,
                                "%s: finite difference %.12g, autograd %.12g" % (name, numeric, analytic))

    def test_model_directional_derivatives_all_parameters(self):
        cfg, params = tiny_model(seed=41)
        self.check_directional_derivatives(cfg, params, 24)

    def test_model_directional_derivatives_silu_tied_scaled_rescaled_no_affine(self):
        cfg, params = tiny_model(seed=42, swiglu=False, share_embedding=True, scale_embedding=True,
                                 norm_affine=False, rescale_nffn=True)
        self.check_directional_derivatives(cfg, params, 16)


class CemaChecks(unittest.TestCase):
    """(b) recurrence == convolution."""

    def check(self, with_state, L):
        x, alpha, delta, theta, gamma, omega, h_in = cema_inputs(3, L, 5, 4, seed=51 + L, with_state=with_state)
        y_conv, h_conv = ref.cema(x, alpha, delta, theta, gamma, omega, h_in)
        y_rec, h_rec = ref.cema_recurrent(x, alpha, delta, theta, gamma, omega, h_in)
        self.assertLess(rel_err(y_conv, y_rec), 1e-12)
        self.assertLess(rel_err(h_conv, h_rec), 1e-12)

    def test_recurrence_equals_convolution_with_incoming_state(self):
        for L in (1, 7, 64, 300):
            with self.subTest(L=L):
                self.check(True, L)

    def test_recurrence_equals_convolution_from_zero_state(self):
        self.check(False, 33)

    def test_coefficients_match_spec_formulas(self):
        # §2.3.2 with complex numbers: p = σ(alpha), q = (1 − σ(alpha)σ(delta))·e^{iφ}, φ_n = n·σ(theta)·2π/N,
        # γ = (gamma_re + i·gamma_im)/sqrt(N)
        _, alpha, delta, theta, gamma, _, _ = cema_inputs(1, 1, 3, 4, seed=57)
        p, log_r, phi, g_re, g_im = ref.cema_coefficients(alpha, delta, theta, gamma)
        for d in range(3):
            s = 1.0 / (1.0 + math.exp(-float(theta[d, 0, 0])))
            for n in range(4):
                a = 1.0 / (1.0 + math.exp(-float(alpha[d, n, 0])))
                dl = 1.0 / (1.0 + math.exp(-float(delta[d, n, 0])))
                q = (1.0 - a * dl) * cmath.exp(1j * (n + 1) * s * 2.0 * math.pi / 4)
                r = math.exp(float(log_r[d, n]))
                self.assertAlmostEqual(float(p[d, n]), a, places=14)
                self.assertAlmostEqual(abs(q - cmath.rect(r, float(phi[d, n]))), 0.0, places=14)
                self.assertAlmostEqual(float(g_re[d, n]), float(gamma[d, n, 0]) / 2.0, places=14)
                self.assertAlmostEqual(float(g_im[d, n]), float(gamma[d, n, 1]) / 2.0, places=14)

    def test_single_step_matches_spec_decoding_formula(self):
        # §2.3.4: y = Re(Σ_n γ_n (q_n h_n + p_n x)) + omega·x with complex arithmetic done by torch.complex
        x, alpha, delta, theta, gamma, omega, h_in = cema_inputs(2, 1, 3, 4, seed=58)
        y, h_out = ref.cema(x, alpha, delta, theta, gamma, omega, h_in)
        p, log_r, phi, g_re, g_im = ref.cema_coefficients(alpha, delta, theta, gamma)
        q = torch.polar(torch.exp(log_r), phi)
        g = torch.complex(g_re, g_im)
        h = torch.view_as_complex(h_in.contiguous())
        h_new = q * h + p * x[:, 0, :, None]
        y_expected = (g * h_new).sum(-1).real + omega[:, 0] * x[:, 0]
        self.assertLess(rel_err(y[:, 0], y_expected), 1e-13)
        self.assertLess(rel_err(torch.view_as_complex(h_out.contiguous()), h_new), 1e-13)


class TimestepNormChecks(unittest.TestCase):
    """(c) sequential Welford == brute-force cumulative statistics."""

    def brute_force(self, x, weight, bias, G, eps, state):
        B, L, D = x.shape
        dg = D // G
        count, mean0, var0 = state
        xg = x.reshape(B, L, G, dg)
        n0 = count.to(F64).view(B, 1) * dg                     # prior pseudo-samples per group
        ys = []
        for t in range(L):
            seen = xg[:, :t + 1].permute(0, 2, 1, 3).reshape(B, G, -1)   # all (t+1)·dg scalars
            total = n0 + seen.shape[-1]
            mean = (n0 * mean0 + seen.sum(-1)) / total
            var = (n0 * (var0 + (mean0 - mean) ** 2) + ((seen - mean.unsqueeze(-1)) ** 2).sum(-1)) / total
            y = (xg[:, t] - mean.unsqueeze(-1)) / torch.sqrt(var.unsqueeze(-1) + eps)
            ys.append(y.reshape(B, D) * (weight + 1.0) + bias)
        return torch.stack(ys, 1), mean, var

    def test_matches_brute_force_from_prior(self):
        x, weight, bias, _ = norm_inputs(2, 9, 12, 3, seed=61)
        prior = ref.initial_norm_state(2, 3, F64, "cpu")
        y, (count, mean, var) = ref.timestep_norm(x, weight, bias, 3, 1e-5)
        y_bf, mean_bf, var_bf = self.brute_force(x, weight, bias, 3, 1e-5, prior)
        self.assertLess(rel_err(y, y_bf), 1e-12)
        self.assertLess(rel_err(mean, mean_bf), 1e-12)
        self.assertLess(rel_err(var, var_bf), 1e-12)
        self.assertTrue(bool((count == 9).all()))

    def test_matches_brute_force_with_incoming_state(self):
        x, weight, bias, state = norm_inputs(2, 9, 12, 4, seed=62, count=5)
        y, (count, mean, var) = ref.timestep_norm(x, weight, bias, 4, 1e-5, state)
        y_bf, mean_bf, var_bf = self.brute_force(x, weight, bias, 4, 1e-5, state)
        self.assertLess(rel_err(y, y_bf), 1e-12)
        self.assertLess(rel_err(mean, mean_bf), 1e-12)
        self.assertLess(rel_err(var, var_bf), 1e-12)
        self.assertTrue(bool((count == 14).all()))

    def test_first_step_ignores_the_prior(self):
        # with count 0 the prior mean/variance have no effect (c1 = 0)
        x, weight, bias, (_, mean, var) = norm_inputs(2, 4, 8, 2, seed=63)
        zero = torch.zeros(2, dtype=torch.int64)
        y1, _ = ref.timestep_norm(x, weight, bias, 2, 1e-5, (zero, mean, var))
        y2, _ = ref.timestep_norm(x, weight, bias, 2, 1e-5)
        self.assertLess(rel_err(y1, y2), 1e-14)


class SplitEqualsWhole(unittest.TestCase):
    """(d) two pieces with carried state == one piece."""

    def test_timestep_norm(self):
        x, weight, bias, state = norm_inputs(2, 13, 8, 2, seed=71)
        for start in (None, state):
            y, s = ref.timestep_norm(x, weight, bias, 2, 1e-5, start)
            y1, s1 = ref.timestep_norm(x[:, :6], weight, bias, 2, 1e-5, start)
            y2, s2 = ref.timestep_norm(x[:, 6:], weight, bias, 2, 1e-5, s1)
            self.assertLess(rel_err(torch.cat([y1, y2], 1), y), 1e-13)
            self.assertTrue(bool((s2[0] == s[0]).all()))
            self.assertLess(rel_err(s2[1], s[1]), 1e-13)
            self.assertLess(rel_err(s2[2], s[2]), 1e-13)

    def test_cema(self):
        x, alpha, delta, theta, gamma, omega, h_in = cema_inputs(2, 21, 4, 3, seed=72)
        for start in (None, h_in):
            y, h = ref.cema(x, alpha, delta, theta, gamma, omega, start)
            y1, h1 = ref.cema(x[:, :8], alpha, delta, theta, gamma, omega, start)
            y2, h2 = ref.cema(x[:, 8:], alpha, delta, theta, gamma, omega, h1)
            self.assertLess(rel_err(torch.cat([y1, y2], 1), y), 1e-12)
            self.assertLess(rel_err(h2, h), 1e-12)

    def test_model_logits_and_gradients(self):
        cfg, params = tiny_model(seed=73)
        c = cfg["chunk_size"]
        ids, targets = random_ids(cfg, 2, 3 * c, 74), random_ids(cfg, 2, 3 * c, 75)
        logits, loss, grads = ref.loss_and_gradients(params, cfg, ids, targets)
        for cut in (c, 2 * c):
            with self.subTest(cut=cut):
                leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
                l1, state = ref.forward(leaves, cfg, ids[:, :cut])
                l2, _ = ref.forward(leaves, cfg, ids[:, cut:], state)  # the state stays in the graph
                self.assertLess(rel_err(torch.cat([l1, l2], 1).detach(), logits), 1e-12)
                total = (ref.token_losses(l1, targets[:, :cut]).sum() +
                         ref.token_losses(l2, targets[:, cut:]).sum()) / targets.numel()
                self.assertLess(abs(float(total) - float(loss)), 1e-12)
                split_grads = torch.autograd.grad(total, list(leaves.values()))
                for (name, g), g_split in zip(grads.items(), split_grads):
                    self.assertLess(rel_err(g_split, g), 1e-10, name)

    def test_model_partial_last_piece(self):
        # a piece shorter than a chunk after a chunk-aligned prefix == the same positions of the whole
        cfg, params = tiny_model(seed=76)
        c = cfg["chunk_size"]
        ids = random_ids(cfg, 2, 2 * c, 77)
        whole, _ = ref.forward(params, cfg, ids)
        _, state = ref.forward(params, cfg, ids[:, :c])
        part, _ = ref.forward(params, cfg, ids[:, c:c + 5], state)
        self.assertLess(rel_err(part, whole[:, c:c + 5]), 1e-12)


class ParameterCounts(unittest.TestCase):
    """(e) the table of docs/megalodon.md §4.1 (vocabulary 32000), from shapes only."""

    def test_presets(self):
        expected = {"mega200M": 220627968, "mega1.3B": 1342832640, "mega1.3B_pg19": 1327628288,
                    "mega7.1B": 7117381632, "mega7.3B": 7385817088}
        for name, count in expected.items():
            with self.subTest(preset=name):
                self.assertEqual(ref.parameter_count(ref.make_config(name)), count)

    def test_count_matches_allocated_parameters(self):
        for overrides in ({}, {"swiglu": False, "share_embedding": True, "norm_affine": False,
                               "rescale_nffn": True}):
            cfg = ref.make_config("test", overrides)
            params = ref.init_parameters(cfg, 0)
            self.assertEqual(sum(p.numel() for p in params.values()), ref.parameter_count(cfg))
            for name, shape in ref.parameter_shapes(cfg).items():
                self.assertEqual(tuple(params[name].shape), shape, name)


class Initialisation(unittest.TestCase):
    """§2.9 on the `tiny` preset (large enough for loose statistics)."""

    def test_init(self):
        cfg = ref.make_config("tiny")
        D = cfg["model_dim"]
        p = ref.init_parameters(cfg, seed=5)
        bound = 3.0 / math.sqrt(D)
        for name in ("embed.weight", "output.output.weight"):
            self.assertLessEqual(float(p[name].abs().max()), bound)
            self.assertAlmostEqual(float(p[name].std()), 0.98658 / math.sqrt(D), delta=0.03 / math.sqrt(D))
        for i in range(cfg["num_layers"]):
            m = "layers.%d.mega." % i
            s = torch.sigmoid(p[m + "cema.theta"].flatten()).sort().values
            k = torch.arange(D, 0, -1, dtype=F64)
            self.assertLess(rel_err(s, torch.exp(-k * math.log(D) / D)), 1e-12)
            self.assertFalse(bool((torch.sigmoid(p[m + "cema.theta"].flatten()) ==
                                   torch.exp(-torch.arange(1, D + 1, dtype=F64) * math.log(D) / D)).all()),
                             "theta is not permuted")
            self.assertEqual(float(p[m + "cema.gamma"][:, :, 1].abs().max()), 0.0)
            self.assertAlmostEqual(float(p[m + "cema.gamma"][:, :, 0].std()), 1.0, delta=0.2)
            self.assertAlmostEqual(float(p[m + "cema.alpha"].std()), 0.2, delta=0.03)
            self.assertLessEqual(float(p[m + "cema.omega"].abs().max()), 1.0)
            for lin, fan_in in (("wz", D), ("wv", D), ("wr", D), ("wh1", D), ("wh2", cfg["value_dim"])):
                std = float(p[m + lin + ".weight"].std())
                self.assertAlmostEqual(std, 1.0 / math.sqrt(3 * fan_in), delta=0.05 / math.sqrt(3 * fan_in))
            f = "layers.%d.nffn." % i
            std = float(p[f + "fc2.weight"].std())
            self.assertAlmostEqual(std, 1.0 / math.sqrt(3 * cfg["ffn_hidden_dim"]),
                                   delta=0.05 / math.sqrt(3 * cfg["ffn_hidden_dim"]))
            for zero in ("timenorm.weight", "timenorm.bias", "rmsnorm.weight", "wz.bias", "wv.bias", "wr.bias",
                         "wh1.bias", "gamma", "beta"):
                self.assertEqual(float(p[m + zero].abs().max()), 0.0, zero)
        again = ref.init_parameters(cfg, seed=5)
        self.assertTrue(all(torch.equal(p[k], again[k]) for k in p))

    def test_config_json_round_trip(self):
        cfg = ref.make_config("test", {"swiglu": False, "rope_base": 500})
        self.assertEqual(ref.make_config(ref.config_to_json(cfg)), cfg)


class AttentionChecks(unittest.TestCase):
    """RoPE and chunked attention against direct formulations."""

    def test_rope_is_complex_rotation_and_relative(self):
        gen = torch.Generator().manual_seed(81)
        x = torch.randn(2, 1, 6, 3, 8, generator=gen, dtype=F64)
        y = ref.rope(x, 100.0)
        xc = torch.view_as_complex(x.reshape(2, 1, 6, 3, 4, 2))
        theta = 100.0 ** (-torch.arange(0, 8, 2, dtype=F64) / 8)
        angle = torch.arange(6, dtype=F64).view(6, 1, 1) * theta
        expected = torch.view_as_real(xc * torch.polar(torch.ones_like(angle), angle)).reshape(x.shape)
        self.assertLess(rel_err(y, expected), 1e-14)
        # a fixed query and key at positions (i, j): the score depends only on i − j
        a = torch.randn(8, generator=gen, dtype=F64).expand(1, 6, 1, 8)
        b = torch.randn(8, generator=gen, dtype=F64).expand(1, 6, 1, 8)
        s = torch.einsum("bihd,bjhd->ij", ref.rope(a, 100.0), ref.rope(b, 100.0))
        self.assertLess(rel_err(s[1:, 1:], s[:-1, :-1]), 1e-13)

    def test_chunked_attention_equals_block_diagonal_full_attention(self):
        gen = torch.Generator().manual_seed(82)
        B, L, H, dz, dv, c, base = 2, 12, 2, 4, 3, 4, 50.0
        q = torch.randn(B, L, H * dz, generator=gen, dtype=F64)
        k = torch.randn(B, L, H * dz, generator=gen, dtype=F64)
        v = torch.randn(B, L, H * dv, generator=gen, dtype=F64)
        out = ref.chunked_attention(q, k, v, H, c, base)
        # direct: full L × L scores with positions t mod c, allowed iff same chunk and j ≤ i
        pos = torch.arange(L) % c
        theta = base ** (-torch.arange(0, dz, 2, dtype=F64) / dz)
        rot = torch.polar(torch.ones(L, dz // 2, dtype=F64), pos.to(F64).view(L, 1) * theta).view(L, 1, -1)
        qr = torch.view_as_real(torch.view_as_complex(q.view(B, L, H, dz // 2, 2)) * rot).reshape(B, L, H, dz)
        kr = torch.view_as_real(torch.view_as_complex(k.view(B, L, H, dz // 2, 2)) * rot).reshape(B, L, H, dz)
        expected = torch.zeros(B, L, H, dv, dtype=F64)
        vh = v.view(B, L, H, dv)
        for i in range(L):
            allowed = [j for j in range(L) if j <= i and j // c == i // c]
            scores = torch.einsum("bhd,bjhd->bhj", qr[:, i], kr[:, allowed])
            expected[:, i] = torch.einsum("bhj,bjhd->bhd", torch.softmax(scores, -1), vh[:, allowed])
        self.assertLess(rel_err(out, expected.reshape(B, L, H * dv)), 1e-13)

    def test_rejects_ragged_chunks(self):
        q = torch.zeros(1, 10, 4, dtype=F64)
        with self.assertRaises(ValueError):
            ref.chunked_attention(q, q, q, 1, 4, 10000.0)

    def test_model_is_causal_and_short_sequences_work(self):
        cfg, params = tiny_model(seed=83)
        c = cfg["chunk_size"]
        ids = random_ids(cfg, 2, 2 * c, 84)
        whole, _ = ref.forward(params, cfg, ids)
        short, _ = ref.forward(params, cfg, ids[:, :5])              # L < chunk
        self.assertLess(rel_err(short, whole[:, :5]), 1e-12)
        changed = ids.clone()
        changed[:, c + 3:] = (changed[:, c + 3:] + 1) % cfg["vocab_size"]
        other, _ = ref.forward(params, cfg, changed)
        self.assertLess(rel_err(other[:, :c + 3], whole[:, :c + 3]), 1e-12)
        self.assertGreater(rel_err(other[:, c + 3:], whole[:, c + 3:]), 1e-3)


if __name__ == "__main__":
    unittest.main()

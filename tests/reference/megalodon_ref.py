"""An independent PyTorch reference of the MEGALODON language model, written from the MEGALODON
specification, whose formulas and section numbers docs/megalodon.md restates: every §N.M below is a section
of docs/megalodon.md.

It is the agreement oracle for the C++ engine (in the spirit of llm.c's train_gpt2.py): plain PyTorch
tensor arithmetic, no custom kernels, no torch.nn modules, every formula spelled out next to the section of
docs/megalodon.md it comes from. Gradients are whatever torch.autograd derives from this forward, so the
forward is the only thing that has to be right (test_reference_selfcheck.py checks it several independent ways).

The model is functional: parameters live in a dict keyed by the official state_dict names (the C++ engine
uses the same names), `forward(params, cfg, input_ids)` returns logits, and the dtype of the parameters
(float64 or float32) is the compute dtype. Complex CEMA quantities are carried as explicit (real, imag)
pairs of real tensors, and a CEMA state h is stored as a real tensor (B, D, N, 2), the layout of
torch.view_as_real. Dropout is not implemented: the config must have every dropout rate at 0.

Runs on PyTorch >= 1.13 (CPU or CUDA).
"""

import json
import math
from collections import OrderedDict

import torch

# --------------------------------------------------------------------------------------------------------
# Configuration (the keys and defaults of the C++ MegalodonConfig, nn/megalodon_config.{h,cpp})
# --------------------------------------------------------------------------------------------------------

CONFIG_DEFAULTS = OrderedDict([
    ("name", "custom"),
    ("vocab_size", 32000),
    ("model_dim", 1024),
    ("num_layers", 12),
    ("num_heads", 1),
    ("z_dim", 256),
    ("value_dim", 2048),
    ("ffn_hidden_dim", 2560),
    ("cema_ndim", 16),
    ("norm_num_groups", 32),
    ("chunk_size", 2048),
    ("rope_base", 10000.0),
    ("norm_eps", 1e-5),
    ("swiglu", False),
    ("share_embedding", False),
    ("scale_embedding", False),
    ("norm_affine", True),
    ("rescale_nffn", False),
    ("dropout", 0.0),
    ("hidden_dropout", 0.0),
    ("attention_dropout", 0.0),
    ("attention_dropout_kind", "dropout"),
    ("activation_checkpointing", False),
])


def _preset(name, layers, d, h, z, v, f, swiglu, groups, **extra):
    cfg = OrderedDict(CONFIG_DEFAULTS)
    cfg.update(name=name, num_layers=layers, model_dim=d, num_heads=h, z_dim=z, value_dim=v,
               ffn_hidden_dim=f, swiglu=swiglu, norm_num_groups=groups)
    cfg.update(extra)
    return cfg


# The presets of the C++ engine (official repo presets of docs/megalodon.md §4.1, the paper's 7B of §4.2,
# and two small ones). Vocabulary 32000 = the Llama-2 tokenizer.
PRESETS = OrderedDict([
    ("mega200M", _preset("mega200M", 12, 1024, 1, 256, 2048, 2560, False, 32)),
    ("mega1.3B", _preset("mega1.3B", 24, 2048, 2, 512, 4096, 4864, False, 64)),
    ("mega1.3B_pg19", _preset("mega1.3B_pg19", 24, 2048, 2, 512, 4096, 3584, True, 64,
                              share_embedding=True, scale_embedding=True)),
    ("mega7.1B", _preset("mega7.1B", 32, 4096, 4, 1024, 8192, 11264, False, 64)),
    ("mega7.3B", _preset("mega7.3B", 32, 4096, 4, 1024, 8192, 8192, True, 64)),
    ("paper7b", _preset("paper7b", 32, 4096, 4, 1024, 8192, 8192, True, 64,
                        chunk_size=4096, rope_base=100000.0)),
    ("tiny", _preset("tiny", 2, 128, 2, 64, 256, 256, True, 8, vocab_size=256, cema_ndim=8, chunk_size=64)),
    ("test", _preset("test", 2, 16, 2, 8, 12, 24, True, 4, vocab_size=50, cema_ndim=4, chunk_size=8)),
])


def _check_type(key, value):
    default = CONFIG_DEFAULTS[key]
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ValueError("config key '%s' expects a %s, got %r" % (key, type(default).__name__, value))
    return float(value) if isinstance(default, float) else value


def make_config(spec=None, overrides=None):
    """A validated config dict. `spec`: None (the defaults), a preset name, JSON text ('{...}'), the path of
    a JSON file, or a dict. JSON and dicts are applied over the defaults, like MegalodonConfig::from_json.
    `overrides`: a dict applied last. Unknown keys and wrongly typed values raise ValueError."""
    if spec is None:
        cfg, updates = OrderedDict(CONFIG_DEFAULTS), {}
    elif isinstance(spec, dict):
        cfg, updates = OrderedDict(CONFIG_DEFAULTS), spec
    elif spec in PRESETS:
        cfg, updates = OrderedDict(PRESETS[spec]), {}
    elif spec.lstrip().startswith("{"):
        cfg, updates = OrderedDict(CONFIG_DEFAULTS), json.loads(spec)
    else:
        try:
            with open(spec) as f:
                updates = json.load(f)
        except FileNotFoundError:
            raise ValueError("config '%s' is neither a preset (%s), JSON text, nor a file"
                             % (spec, ", ".join(PRESETS))) from None
        cfg = OrderedDict(CONFIG_DEFAULTS)
    for source in (updates, overrides or {}):
        for key, value in source.items():
            if key not in CONFIG_DEFAULTS:
                raise ValueError("config: unknown key '%s'" % key)
            cfg[key] = _check_type(key, value)
    validate_config(cfg)
    return cfg


def validate_config(cfg):
    """The checks of MegalodonConfig::validate, plus: the reference has no dropout."""
    for key in ("vocab_size", "model_dim", "num_layers", "num_heads", "z_dim", "value_dim", "ffn_hidden_dim",
                "cema_ndim", "norm_num_groups", "chunk_size"):
        if cfg[key] <= 0:
            raise ValueError("config: %s must be positive, got %d" % (key, cfg[key]))
    if cfg["z_dim"] % cfg["num_heads"] or cfg["value_dim"] % cfg["num_heads"]:
        raise ValueError("config: z_dim and value_dim must be divisible by num_heads")
    if (cfg["z_dim"] // cfg["num_heads"]) % 2:
        raise ValueError("config: the per-head z width must be even for rotary embedding")
    if cfg["model_dim"] % cfg["norm_num_groups"]:
        raise ValueError("config: model_dim is not divisible by norm_num_groups")
    if cfg["rope_base"] <= 1.0 or cfg["norm_eps"] <= 0.0:
        raise ValueError("config: rope_base must be > 1 and norm_eps > 0")
    if cfg["attention_dropout_kind"] not in ("dropout", "dropkey"):
        raise ValueError("config: attention_dropout_kind must be 'dropout' or 'dropkey'")
    for key in ("dropout", "hidden_dropout", "attention_dropout"):
        if cfg[key] != 0.0:
            raise ValueError("config: %s = %g, but the reference implements no dropout (set it to 0)"
                             % (key, cfg[key]))


def config_to_json(cfg):
    """Every key in the order of MegalodonConfig::to_json (what `debug_state --config` reads)."""
    return json.dumps(OrderedDict((k, cfg[k]) for k in CONFIG_DEFAULTS), indent=2)


# --------------------------------------------------------------------------------------------------------
# Parameters: names, shapes, count, initialisation (docs/megalodon.md §2.1–§2.7, §2.9)
# --------------------------------------------------------------------------------------------------------

def parameter_shapes(cfg):
    """OrderedDict official state_dict name -> shape, without allocating anything."""
    D, Z, V, F, N = cfg["model_dim"], cfg["z_dim"], cfg["value_dim"], cfg["ffn_hidden_dim"], cfg["cema_ndim"]
    shapes = OrderedDict()
    shapes["embed.weight"] = (cfg["vocab_size"], D)
    for i in range(cfg["num_layers"]):
        m = "layers.%d.mega." % i
        shapes[m + "timenorm.weight"] = (D,)
        shapes[m + "timenorm.bias"] = (D,)
        shapes[m + "cema.alpha"] = (D, N, 1)
        shapes[m + "cema.delta"] = (D, N, 1)
        shapes[m + "cema.theta"] = (D, 1, 1)
        shapes[m + "cema.gamma"] = (D, N, 2)
        shapes[m + "cema.omega"] = (D, 1)
        if cfg["norm_affine"]:
            shapes[m + "rmsnorm.weight"] = (D,)
        shapes[m + "wz.weight"] = (Z, D)
        shapes[m + "wz.bias"] = (Z,)
        shapes[m + "wv.weight"] = (V, D)
        shapes[m + "wv.bias"] = (V,)
        shapes[m + "wr.weight"] = (V, D)
        shapes[m + "wr.bias"] = (V,)
        shapes[m + "wh1.weight"] = (D, D)
        shapes[m + "wh1.bias"] = (D,)
        shapes[m + "wh2.weight"] = (D, V)
        shapes[m + "gamma"] = (2, Z)
        shapes[m + "beta"] = (2, Z)
        f = "layers.%d.nffn." % i
        if cfg["norm_affine"]:
            shapes[f + "norm.weight"] = (D,)
            shapes[f + "norm.bias"] = (D,)
        shapes[f + "fc1.weight"] = (F, D)
        shapes[f + "fc2.weight"] = (D, F)
        if cfg["swiglu"]:
            shapes[f + "fc3.weight"] = (F, D)
        if cfg["rescale_nffn"]:
            shapes[f + "alpha"] = (D,)
    shapes["output.final_norm.weight"] = (D,)
    shapes["output.final_norm.bias"] = (D,)
    if not cfg["share_embedding"]:
        shapes["output.output.weight"] = (cfg["vocab_size"], D)
    return shapes


def parameter_count(cfg):
    """Number of parameters (a tied head counted once), from the shapes alone."""
    total = 0
    for shape in parameter_shapes(cfg).values():
        total += math.prod(shape)
    return total


_LINEARS = ("wz", "wv", "wr", "wh1", "wh2", "fc1", "fc2", "fc3")


def init_parameters(cfg, seed=0, dtype=torch.float64, device="cpu"):
    """Fresh parameters per docs/megalodon.md §2.9, drawn on the CPU in float64 from torch.Generator(seed), in the
    order of parameter_shapes (so a seed always gives the same model), then cast to dtype/device."""
    gen = torch.Generator().manual_seed(seed)
    D = cfg["model_dim"]

    def normal(shape, std):
        return torch.randn(shape, generator=gen, dtype=torch.float64) * std

    def trunc_normal(shape, std, lo, hi):  # rejection sampling: exactly the normal law restricted to [lo, hi]
        out = normal(shape, std)
        bad = (out < lo) | (out > hi)
        while bool(bad.any()):
            out[bad] = normal((int(bad.sum()),), std)
            bad = (out < lo) | (out > hi)
        return out

    params = OrderedDict()
    for name, shape in parameter_shapes(cfg).items():
        parts = name.split(".")
        if name in ("embed.weight", "output.output.weight"):
            std = 1.0 / math.sqrt(D)  # truncated normal, cut at +-3 std (§2.1, §2.7)
            value = trunc_normal(shape, std, -3.0 * std, 3.0 * std)
        elif parts[-2] == "cema" and parts[-1] in ("alpha", "delta"):
            value = normal(shape, 0.2)
        elif parts[-2] == "cema" and parts[-1] == "theta":
            # logit of f_k = D^(-k/D) = exp(-k ln D / D), k = 1..D, randomly permuted over channels (§2.3.1)
            k = torch.arange(1, D + 1, dtype=torch.float64)
            f = torch.exp(-k * math.log(D) / D)[torch.randperm(D, generator=gen)]
            value = torch.log(f / (1.0 - f)).view(shape)
        elif parts[-2] == "cema" and parts[-1] == "gamma":
            value = torch.zeros(shape, dtype=torch.float64)
            value[:, :, 0] = normal(shape[:2], 1.0)  # real part N(0, 1), imaginary part 0
        elif parts[-2] == "cema" and parts[-1] == "omega":
            value = trunc_normal(shape, 0.25, -1.0, 1.0)
        elif parts[-2] in _LINEARS and parts[-1] == "weight":
            value = normal(shape, 1.0 / math.sqrt(3.0 * shape[1]))  # He, kaiming_normal_(a=sqrt(5)), fan-in
        elif parts[-2] == "nffn" and parts[-1] == "alpha":
            value = torch.full(shape, 0.1 * 0.5 ** int(parts[1]), dtype=torch.float64)
        else:  # norm scales (stored as scale - 1), norm shifts, linear biases, q/k gamma and beta
            value = torch.zeros(shape, dtype=torch.float64)
        params[name] = value.to(dtype=dtype, device=device)
    return params


def perturb_zero_initialised(params, seed=1, scale=0.2):
    """Adds N(0, scale^2) noise to every parameter that §2.9 initialises to a constant (norm scales and
    shifts, linear biases, q/k gamma/beta, the FFN rescale) and to the imaginary part of CEMA gamma, so that
    a test exercises every term of the forward and every gradient path. Returns a new dict."""
    gen = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for name, value in params.items():
        parts = name.split(".")
        value = value.clone()
        noise = lambda shape: (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(value)
        if parts[-2] == "cema" and parts[-1] == "gamma":
            value[:, :, 1] += noise(value.shape[:2])
        elif parts[-2] == "cema" or name in ("embed.weight", "output.output.weight"):
            pass
        elif parts[-1] == "bias" or parts[-1] in ("gamma", "beta", "alpha"):
            value += noise(value.shape)
        elif parts[-1] == "weight" and parts[-2] not in _LINEARS:  # norm scales
            value += noise(value.shape)
        out[name] = value
    return out


# --------------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------------

def silu(u):
    return u * torch.sigmoid(u)


def linear(x, weight, bias=None):
    """x · weightᵀ (+ bias); weight is (out, in) like torch.nn.Linear."""
    y = torch.matmul(x, weight.t())
    return y if bias is None else y + bias


def rms_norm(x, weight, eps):
    """§2.4: y = x · (mean(x²) + eps)^(-1/2) · (weight + 1) over the last dim; weight None = no affine."""
    y = x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps)
    return y if weight is None else y * (weight + 1.0)


def layer_norm(x, weight, bias, eps):
    """§2.4: y = (x − mean) · (var + eps)^(-1/2) · (weight + 1) + bias (population variance)."""
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    y = (x - mu) * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * (weight + 1.0)
    if bias is not None:
        y = y + bias
    return y


def initial_norm_state(batch, groups, dtype, device):
    """The TimestepNorm prior of all presets (§2.2.1): count 0, mean 0, variance exp(0) = 1."""
    return (torch.zeros(batch, dtype=torch.int64, device=device),
            torch.zeros(batch, groups, dtype=dtype, device=device),
            torch.ones(batch, groups, dtype=dtype, device=device))


def timestep_norm(x, weight, bias, num_groups, eps, state=None):
    """TimestepNorm, §2.2.2, by the sequential Welford recurrence over time.

    x: (B, L, D); weight (stored as scale − 1), bias: (D,); state: (count (B,) int64, mean (B, G),
    var (B, G)) or None for the prior. Returns (y (B, L, D), final state)."""
    B, L, D = x.shape
    G = num_groups
    if state is None:
        state = initial_norm_state(B, G, x.dtype, x.device)
    count, mu, var = state
    xg = x.reshape(B, L, G, D // G)
    m = xg.mean(-1)                                          # per-step group mean m_t   (B, L, G)
    s = ((xg - m.unsqueeze(-1)) ** 2).mean(-1)              # per-step group variance s_t (population)
    n = count.to(x.dtype).unsqueeze(-1)                      # steps absorbed so far     (B, 1)
    mus, rstds = [], []
    for t in range(L):
        c1 = n / (n + 1.0)
        c2 = 1.0 / (n + 1.0)
        d = m[:, t] - mu                                     # m_t − μ_{t−1}
        var = c1 * var + c2 * s[:, t] + c1 * c2 * d * d
        mu = c1 * mu + c2 * m[:, t]
        n = n + 1.0
        mus.append(mu)
        rstds.append(torch.rsqrt(var + eps))
    mu_t = torch.stack(mus, 1).unsqueeze(-1)                 # (B, L, G, 1)
    r_t = torch.stack(rstds, 1).unsqueeze(-1)
    y = ((xg - mu_t) * r_t).reshape(B, L, D) * (weight + 1.0) + bias
    return y, (count + L, mu, var)


def cema_coefficients(alpha, delta, theta, gamma):
    """§2.3.2. Returns (p, log_r, phi, gamma_re, gamma_im), each (D, N): the input weight p = σ(alpha), the
    decay q = r·e^{iφ} with r = 1 − σ(alpha)σ(delta) and φ_n = n·σ(theta)·2π/N (n = 1..N), and the output
    weight γ = (gamma_re + i·gamma_im)/sqrt(N)."""
    D, N, _ = alpha.shape
    a = torch.sigmoid(alpha[:, :, 0])
    d = torch.sigmoid(delta[:, :, 0])
    s = torch.sigmoid(theta[:, 0, 0])
    n = torch.arange(1, N + 1, dtype=alpha.dtype, device=alpha.device)
    phi = n.unsqueeze(0) * s.unsqueeze(1) * (2.0 * math.pi / N)
    log_r = torch.log(1.0 - a * d)
    scale = 1.0 / math.sqrt(N)
    return a, log_r, phi, gamma[:, :, 0] * scale, gamma[:, :, 1] * scale


def cema_powers(log_r, phi, exponents):
    """q^j = exp(j·log q) = exp(j·log r)·(cos jφ + i sin jφ) for every exponent j; returns (re, im), each
    (D, N, J). Never by repeated multiplication (§2.3.6)."""
    j = exponents.view(1, 1, -1)
    magnitude = torch.exp(j * log_r.unsqueeze(-1))
    angle = j * phi.unsqueeze(-1)
    return magnitude * torch.cos(angle), magnitude * torch.sin(angle)


def cema(x, alpha, delta, theta, gamma, omega, h_in=None):
    """CEMA by an explicit causal convolution, §2.3.3.

    x: (B, L, D) (token-major; the spec's channel-major view is only a layout); h_in: (B, D, N, 2) or None.
    Returns (y (B, L, D), h_out (B, D, N, 2)) with
      K_{d,j} = Re(Σ_n p γ q^j),  y_t = Σ_{j≤t} K_j x_{t−j} + Re(Σ_n γ q^{t+1} h_in) + omega·x_t,
      h_out = p Σ_j q^{L−1−j} x_j + q^L h_in."""
    B, L, D = x.shape
    p, log_r, phi, g_re, g_im = cema_coefficients(alpha, delta, theta, gamma)
    exponents = torch.arange(L + 1, dtype=x.dtype, device=x.device)
    pw_re, pw_im = cema_powers(log_r, phi, exponents)                    # q^0 .. q^L, (D, N, L+1)

    # K_{d,j} = Σ_n p·Re(γ q^j), j = 0..L−1, and the causal Toeplitz matrix Kmat[d, t, s] = K[d, t−s] (t ≥ s)
    K = ((p * g_re).unsqueeze(-1) * pw_re[:, :, :L] - (p * g_im).unsqueeze(-1) * pw_im[:, :, :L]).sum(1)
    t = torch.arange(L, device=x.device)
    lag = t.view(L, 1) - t.view(1, L)
    Kmat = K[:, lag.clamp(min=0)] * (lag >= 0).to(x.dtype)              # (D, L, L)
    y = torch.einsum("dts,bsd->btd", Kmat, x) + x * omega[:, 0]

    # final state from the input: p Σ_s q^{L−1−s} x_s
    rev_re = p.unsqueeze(-1) * pw_re[:, :, :L].flip(-1)                 # [d, n, s] = p q^{L−1−s}
    rev_im = p.unsqueeze(-1) * pw_im[:, :, :L].flip(-1)
    h_re = torch.einsum("dns,bsd->bdn", rev_re, x)
    h_im = torch.einsum("dns,bsd->bdn", rev_im, x)

    if h_in is not None:
        hi_re, hi_im = h_in[..., 0], h_in[..., 1]                       # (B, D, N)
        # state contribution Re(Σ_n γ q^{t+1} h_in): w = γ·q^{t+1}, Re(w·h) = w_re h_re − w_im h_im
        w_re = g_re.unsqueeze(-1) * pw_re[:, :, 1:] - g_im.unsqueeze(-1) * pw_im[:, :, 1:]
        w_im = g_re.unsqueeze(-1) * pw_im[:, :, 1:] + g_im.unsqueeze(-1) * pw_re[:, :, 1:]
        y = y + torch.einsum("dnt,bdn->btd", w_re, hi_re) - torch.einsum("dnt,bdn->btd", w_im, hi_im)
        # + q^L h_in
        qL_re, qL_im = pw_re[:, :, L], pw_im[:, :, L]
        h_re = h_re + qL_re * hi_re - qL_im * hi_im
        h_im = h_im + qL_re * hi_im + qL_im * hi_re
    return y, torch.stack([h_re, h_im], -1)


def cema_recurrent(x, alpha, delta, theta, gamma, omega, h_in=None):
    """CEMA by the recurrence of §2.3.2, step by step: h_t = q h_{t−1} + p x_t, y_t = Re(Σ_n γ h_t) +
    omega·x_t. Same interface and results as cema(); used to check it."""
    B, L, D = x.shape
    p, log_r, phi, g_re, g_im = cema_coefficients(alpha, delta, theta, gamma)
    r = torch.exp(log_r)
    q_re, q_im = r * torch.cos(phi), r * torch.sin(phi)
    N = p.shape[1]
    if h_in is None:
        h_re = x.new_zeros(B, D, N)
        h_im = x.new_zeros(B, D, N)
    else:
        h_re, h_im = h_in[..., 0], h_in[..., 1]
    ys = []
    for t in range(L):
        xt = x[:, t, :].unsqueeze(-1)                                    # (B, D, 1)
        h_re, h_im = q_re * h_re - q_im * h_im + p * xt, q_re * h_im + q_im * h_re
        ys.append((g_re * h_re - g_im * h_im).sum(-1))
    y = torch.stack(ys, 1) + x * omega[:, 0]
    return y, torch.stack([h_re, h_im], -1)


def rope(x, base):
    """Interleaved rotary embedding, §2.5.3. x: (..., c, H, dz) with positions 0..c−1 along dim −3; the pair
    (2i, 2i+1) is rotated by angle p·base^(−2i/dz)."""
    c, dz = x.shape[-3], x.shape[-1]
    i = torch.arange(dz // 2, dtype=x.dtype, device=x.device)
    freqs = torch.exp(i * (-2.0 * math.log(base) / dz))                  # base^(−2i/dz)
    pos = torch.arange(c, dtype=x.dtype, device=x.device)
    angle = (pos.view(c, 1) * freqs.view(1, -1)).view(c, 1, dz // 2)     # broadcast over heads
    cos, sin = torch.cos(angle), torch.sin(angle)
    xe, xo = x[..., 0::2], x[..., 1::2]
    return torch.stack([xe * cos - xo * sin, xe * sin + xo * cos], -1).flatten(-2)


def chunked_attention(q, k, v, num_heads, chunk_size, rope_base):
    """§2.5.2 steps 6–7: split time into chunks of c (L ≤ c: one chunk of L), RoPE with positions restarting
    at 0 in every chunk, causal softmax(Q Kᵀ) with scale 1.0 per (batch, chunk, head), O = P·V.
    q, k: (B, L, Z); v: (B, L, V). Returns (B, L, V)."""
    B, L, Z = q.shape
    if L > chunk_size and L % chunk_size != 0:
        raise ValueError("sequence length %d must be at most the chunk size %d or a multiple of it"
                         % (L, chunk_size))
    c = min(L, chunk_size)
    nc = L // c
    H = num_heads
    qc = rope(q.reshape(B, nc, c, H, Z // H), rope_base)
    kc = rope(k.reshape(B, nc, c, H, Z // H), rope_base)
    vc = v.reshape(B, nc, c, H, v.shape[-1] // H)
    scores = torch.einsum("bkihd,bkjhd->bkhij", qc, kc)                 # scale 1.0
    future = torch.triu(torch.ones(c, c, dtype=torch.bool, device=q.device), diagonal=1)
    scores = scores.masked_fill(future, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    out = torch.einsum("bkhij,bkjhd->bkihd", probs, vc)
    return out.reshape(B, L, v.shape[-1])


# --------------------------------------------------------------------------------------------------------
# The model (§2.5, §2.6, §2.7, §3.1)
# --------------------------------------------------------------------------------------------------------

def mega_unit(x, params, prefix, cfg, norm_state=None, cema_state=None):
    """The normalized attention unit, §2.5.2: returns (Ŷ = Hh + X, TimestepNorm state, CEMA state)."""
    B, L, D = x.shape
    H, Z = cfg["num_heads"], cfg["z_dim"]
    dz = Z // H
    eps = cfg["norm_eps"]
    P = lambda name: params.get(prefix + name)

    T, norm_state = timestep_norm(x, P("timenorm.weight"), P("timenorm.bias"), cfg["norm_num_groups"], eps,
                                  norm_state)
    U, cema_state = cema(T, P("cema.alpha"), P("cema.delta"), P("cema.theta"), P("cema.gamma"),
                         P("cema.omega"), cema_state)
    M = rms_norm(U, P("rmsnorm.weight"), eps)

    Zp = linear(M, P("wz.weight"), P("wz.bias"))
    Zn = rms_norm(Zp.reshape(B, L, H, dz), None, eps).reshape(B, L, Z)   # per-head RMS, no affine
    scale = (P("gamma") + 1.0) / math.sqrt(dz)                          # (2, Z)
    q = Zn * scale[0] + P("beta")[0]
    k = Zn * scale[1] + P("beta")[1]
    values = silu(linear(T, P("wv.weight"), P("wv.bias")))              # from the TimestepNorm output
    gate = silu(linear(M, P("wr.weight"), P("wr.bias")))

    O = chunked_attention(q, k, values, H, cfg["chunk_size"], cfg["rope_base"])
    Hh = linear(M, P("wh1.weight"), P("wh1.bias")) + linear(O * gate, P("wh2.weight"))
    return Hh + x, norm_state, cema_state


def normalized_ffn(y_hat, x, params, prefix, cfg):
    """§2.6: LayerNorm(Ŷ) → SiLU or SwiGLU FFN → (optional per-channel rescale) → + X (the block input)."""
    P = lambda name: params.get(prefix + name)
    n = layer_norm(y_hat, P("norm.weight"), P("norm.bias"), cfg["norm_eps"])
    hidden = silu(linear(n, P("fc1.weight")))
    if cfg["swiglu"]:
        hidden = hidden * linear(n, P("fc3.weight"))
    f = linear(hidden, P("fc2.weight"))
    if cfg["rescale_nffn"]:
        f = f * P("alpha")
    return f + x


def forward(params, cfg, input_ids, state=None):
    """Logits (B, L, vocab) of the model, and the state after the last token.

    state: None (start of the sequences) or what a previous call returned: {"layers": [(norm_state,
    cema_state), ...], "final_norm": norm_state}. Passing it continues the sequences exactly as if they were
    one (attention chunks must then be aligned: the previous call's length a multiple of the chunk size)."""
    D = cfg["model_dim"]
    x = params["embed.weight"][input_ids]
    if cfg["scale_embedding"]:
        x = x * math.sqrt(D)
    new_layers = []
    for i in range(cfg["num_layers"]):
        norm_state, cema_state = (None, None) if state is None else state["layers"][i]
        y_hat, norm_state, cema_state = mega_unit(x, params, "layers.%d.mega." % i, cfg, norm_state, cema_state)
        x = normalized_ffn(y_hat, x, params, "layers.%d.nffn." % i, cfg)
        new_layers.append((norm_state, cema_state))
    x, final_state = timestep_norm(x, params["output.final_norm.weight"], params["output.final_norm.bias"],
                                   cfg["norm_num_groups"], cfg["norm_eps"],
                                   None if state is None else state["final_norm"])
    head = params["embed.weight"] if cfg["share_embedding"] else params["output.output.weight"]
    logits = linear(x, head)
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    return logits, {"layers": new_layers, "final_norm": final_state}


def token_losses(logits, targets):
    """Per-token cross-entropy −log softmax(logits)[target], shape (B, L)."""
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return torch.logsumexp(logits, dim=-1) - picked


def cross_entropy(logits, targets):
    """Mean token cross-entropy over every position (§2.7)."""
    return token_losses(logits, targets).mean()


def loss_and_gradients(params, cfg, input_ids, targets):
    """(logits, loss, grads) with grads an OrderedDict in the order of params (autograd)."""
    leaves = OrderedDict((k, v.detach().clone().requires_grad_(True)) for k, v in params.items())
    logits, _ = forward(leaves, cfg, input_ids)
    loss = cross_entropy(logits, targets)
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return logits.detach(), loss.detach(), OrderedDict(zip(leaves.keys(), grads))

"""Batched matrix exponentials of a CTMC generator: ``expm(generator * dt)`` for many gaps.

These are the engines behind :func:`probdyn.kernels.ctmc.transition_matrices`; they take a
*validated* generator ``Q`` (K, K) and gaps ``dts`` (N,) and return (N, K, K). All three
share work across the gaps instead of calling a dense ``expm`` once per gap (Moler & Van
Loan, 2003, discuss the methods and their failure modes):

``pade``
    Scaling and squaring with the [13/13] Padé approximant and the backward-error bound
    :math:`\\theta_{13}` of Higham (2005) / Al-Mohy & Higham (2009). Because every gap's
    scaled matrix is a scalar multiple of the same :math:`\\tilde Q = Q / \\|Q\\|_1`,

    .. math::

        r_{13}(c_n \\tilde Q) = \\Big(\\sum_{k\\,\\mathrm{even}} b_k c_n^k \\tilde Q^k
            - \\sum_{k\\,\\mathrm{odd}} b_k c_n^k \\tilde Q^k\\Big)^{-1}
            \\Big(\\sum_{k} b_k c_n^k \\tilde Q^k\\Big),
        \\qquad c_n = \\frac{\\|Q\\|_1 \\, dt_n}{2^{s_n}} \\le \\theta_{13},

    the powers :math:`\\tilde Q^0..\\tilde Q^{13}` are formed once; each gap costs one
    weighted sum, one LU solve and :math:`s_n` squarings.
``uniformization``
    Jensen (1953): with :math:`\\lambda = \\max_i (-q_{ii})` and the stochastic matrix
    :math:`R = I + Q/\\lambda`,

    .. math::

        P(dt) = \\sum_{k \\ge 0} e^{-\\lambda dt} \\frac{(\\lambda dt)^k}{k!} R^k .

    The series is used for :math:`\\lambda dt / 2^{s} \\le \\mu_{\\max}` and truncated at
    the smallest M whose Poisson tail is below the dtype's epsilon; larger gaps are
    squared :math:`s_n` times. Every term is non-negative, so there is no cancellation.
``eigh``
    For a reversible generator with stationary distribution :math:`\\pi > 0`,
    :math:`S = D^{1/2} Q D^{-1/2}` (:math:`D = \\mathrm{diag}\\,\\pi`) is symmetric, and
    with one ``eigh`` :math:`S = U \\Lambda U^\\top` shared by all gaps

    .. math::

        P(dt) = D^{-1/2} U e^{\\Lambda dt} U^\\top D^{1/2}.

Squaring is masked per gap (``where(i < s_n, P @ P, P)``) inside a ``while_loop`` that runs
``max_n s_n`` times: one compilation whatever the gaps, no cap on the number of squarings
(``jax.scipy.linalg.expm`` returns NaN past its ``max_squarings=16``), and no NaN for any
finite generator (the diagonal Padé approximant is A-stable, so the solve is regular for a
generator, whose eigenvalues have non-positive real part). Each square is clipped at 0 and
renormalised to unit row sums: the exact result is stochastic, and the row-sum defect is
the error component that squaring doubles at every step. On the stiff test grid this cuts
the float32 error of ``pade`` from 1e-3 to 1.6e-6 and of ``uniformization`` from 3e-2 to
1.2e-6 (float64: 7e-12 -> 1e-12, i.e. down to the reference's own error).

The Padé solve is a pure-``jnp`` Gauss-Jordan elimination (:func:`_solve`), not
``jnp.linalg.solve``: see its docstring for the XLA:CPU deadlock this avoids.

Derivatives. ``pade`` and ``uniformization`` share a ``custom_vjp``: the cotangent of
``expm(Q dt_n)`` is the Fréchet derivative at :math:`(Q dt_n)^\\top` in the direction of
the output cotangent, computed with the Padé-13 Fréchet recursion of Al-Mohy & Higham
(2009) with the same shared powers and per-gap squaring, so reverse mode stores only the
(N, K, K) output, never the squaring intermediates. ``eigh`` has a ``custom_jvp`` by the
Daleckii-Krein formula with divided differences of ``exp`` written stably,

.. math::

    \\mathrm{d}F = U \\big(\\Phi \\circ (U^\\top \\mathrm{d}S\\, U)\\big) U^\\top, \\quad
    \\Phi_{ij} = dt\\, e^{dt \\max(\\lambda_i, \\lambda_j)}
        \\frac{1 - e^{-dt |\\lambda_i - \\lambda_j|}}{dt |\\lambda_i - \\lambda_j|},

which is finite for repeated eigenvalues (the gradient of ``eigh`` itself is not) and exact
for perturbations that break reversibility. Forward and reverse mode both work for
``eigh``; ``pade``/``uniformization`` support reverse mode (``grad``, ``vjp``) only.

References
----------
C. Moler and C. Van Loan, "Nineteen dubious ways to compute the exponential of a matrix,
twenty-five years later", SIAM Review 45(1), 2003.
N. J. Higham, "The scaling and squaring method for the matrix exponential revisited",
SIAM J. Matrix Anal. Appl. 26(4), 2005.
A. H. Al-Mohy and N. J. Higham, "A new scaling and squaring algorithm for the matrix
exponential", SIAM J. Matrix Anal. Appl. 31(3), 2009; and "Computing the Fréchet
derivative of the matrix exponential, with an application to condition number
estimation", SIAM J. Matrix Anal. Appl. 30(4), 2009.
A. Jensen, "Markoff chains as an aid in the study of Markoff processes", Skandinavisk
Aktuarietidskrift 36, 1953.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import gammaln, xlogy

Array = jax.Array

__all__ = ["expm_pade", "expm_uniformization", "expm_eigh"]

# [13/13] Padé coefficients b_0..b_13 and the backward-error bound theta_13 (Higham 2005).
_B13 = np.array(
    [
        64764752532480000.0,
        32382376266240000.0,
        7771770303897600.0,
        1187353796428800.0,
        129060195264000.0,
        10559470521600.0,
        670442572800.0,
        33522128640.0,
        1323241920.0,
        40840800.0,
        960960.0,
        16380.0,
        182.0,
        1.0,
    ]
)
_THETA13 = 5.371920351148152
# uniformization: largest lambda*dt handled by the series before squaring
_MU_MAX = 8.0


def _powers(X, m):
    """Stack ``X^0 .. X^m``, shape (m+1, K, K)."""

    def step(P, _):
        P = P @ X
        return P, P

    eye = jnp.eye(X.shape[0], dtype=X.dtype)
    _, ps = lax.scan(step, eye, None, length=m)
    return jnp.concatenate([eye[None], ps])


def _by_squarings(fn, s, *xs, chunks=8):
    """``fn(s, *xs)`` on the gaps sorted by ``s`` and split into ``chunks`` groups.

    ``fn`` runs a masked ``while_loop`` of ``max(s)`` trips; on sorted chunks each group
    pays only its own maximum, so the total work follows the mean squaring count instead
    of the largest one. Groups run one after another (``lax.map``).
    """
    N = s.shape[0]
    C = max(1, min(chunks, N))
    m = -(-N // C)
    order = jnp.argsort(s)

    def group(x):
        x = x[order]
        x = jnp.concatenate([x, jnp.broadcast_to(x[:1], (m * C - N, *x.shape[1:]))])
        return x.reshape(C, m, *x.shape[1:])

    out = lax.map(lambda a: fn(*a), (group(s), *(group(x) for x in xs)))
    out = out.reshape(C * m, *out.shape[2:])[:N]
    return out[jnp.argsort(order)]


def _square_masked(P, s):
    """Square ``P[n]`` exactly ``s[n]`` times; the loop runs ``max(s)`` times.

    Each square is renormalised to unit row sums: the exact result is stochastic, and the
    row-sum error is the component that squaring doubles each time.
    """

    def body(carry):
        i, P = carry
        P2 = jnp.maximum(P @ P, 0.0)
        P2 = P2 / jnp.sum(P2, axis=-1, keepdims=True)
        return i + 1, jnp.where((i < s)[:, None, None], P2, P)

    smax = jnp.max(s, initial=0)
    return lax.while_loop(lambda c: c[0] < smax, body, (jnp.int32(0), P))[1]


def _solve(A, B):
    """Batched ``A^{-1} B`` by Gauss-Jordan elimination with partial pivoting, (N, K, J).

    Pure ``jnp`` on purpose: with jaxlib's LAPACK ``getrf`` custom call in the same program
    as the squaring ``while_loop`` (forward and Fréchet backward), XLA:CPU was seen to
    deadlock intermittently (jax 0.10.2, 2 cores). The Padé denominator ``V - U`` is well
    conditioned for ``||A||_1 <= theta_13`` (Higham 2005), so no refinement is needed.
    """
    K = A.shape[-1]
    rows = jnp.arange(K)
    M = jnp.concatenate([A, B], axis=-1)

    def body(k, M):
        col = jnp.where(rows >= k, jnp.abs(M[:, :, k]), -1.0)
        p = jnp.argmax(col, axis=1)
        row_k = M[:, k]
        row_p = jnp.take_along_axis(M, p[:, None, None], axis=1)[:, 0]
        M = jnp.where((rows[None, :] == p[:, None])[:, :, None], row_k[:, None, :], M)
        piv = row_p / row_p[:, k][:, None]
        M = M - M[:, :, k][:, :, None] * piv[:, None, :]
        return M.at[:, k].set(piv)

    return lax.fori_loop(0, K, body, M)[:, :, K:]


def _scaling(a, bound):
    """Squarings ``s`` (int32) with ``a / 2^s <= bound`` and the scaled value ``a / 2^s``.

    ``s`` is capped at the exponent range of the dtype: an infinite or NaN ``a`` (a
    generator that overflowed, e.g. NUTS trying an extreme step) would otherwise cast to
    a huge int32 and the squaring ``while_loop`` would never end; with the cap the result
    is non-finite, which samplers read as a rejected proposal.
    """
    cap = jnp.finfo(jnp.result_type(a)).maxexp + 32
    s = jnp.ceil(jnp.log2(jnp.maximum(a, bound) / bound))
    s = jnp.clip(jnp.where(jnp.isnan(s), cap, s), 0.0, cap)
    return s.astype(jnp.int32), a / jnp.exp2(s)


def _pade_setup(Q, dts):
    """Normalised generator, its powers, per-gap squarings and Padé weights."""
    nu = jnp.max(jnp.sum(jnp.abs(Q), axis=0))
    nu_safe = jnp.where(nu > 0, nu, 1.0)
    X = Q / nu_safe
    s, c = _scaling(dts * nu, _THETA13)
    return _powers(X, 13), s, c


def _pade_weights(c, dtype):
    """Per-gap weights of the odd part ``U`` and even part ``V`` of Padé-13, (N, 14) each."""
    k = jnp.arange(14)
    w = jnp.asarray(_B13, dtype) * c[:, None] ** k  # b_k c_n^k
    odd = (k % 2 == 1).astype(dtype)
    return w * odd, w * (1 - odd)


def _expm_pade_fwd_impl(Q, dts):
    Xp, s, c = _pade_setup(Q, dts)
    wu, wv = _pade_weights(c, Q.dtype)
    U = jnp.einsum("nk,kij->nij", wu, Xp)
    V = jnp.einsum("nk,kij->nij", wv, Xp)
    P = _solve(V - U, V + U)
    return jnp.maximum(_by_squarings(lambda s, P: _square_masked(P, s), s, P), 0.0)


def _uniformization_truncation(mu: float, tol: float) -> int:
    """Smallest M with Poisson(mu) tail mass beyond M below ``tol`` (a static bound).

    Uses :math:`\\sum_{j > M} p_j \\le p_{M+1} / (1 - \\mu / (M + 2))` for :math:`M + 2 > \\mu`.
    """
    M, p_next = 0, mu * math.exp(-mu)  # p_next = Pois(M + 1; mu)
    while M + 2 <= mu or p_next / (1.0 - mu / (M + 2)) > tol:
        M += 1
        p_next *= mu / (M + 1)
    return M


def _expm_unif_fwd_impl(Q, dts):
    K = Q.shape[0]
    lam = jnp.max(-jnp.diagonal(Q))
    lam_safe = jnp.where(lam > 0, lam, 1.0)
    R = jnp.eye(K, dtype=Q.dtype) + Q / lam_safe
    M = _uniformization_truncation(_MU_MAX, float(jnp.finfo(Q.dtype).eps) / 4)
    Rp = _powers(R, M)
    s, h = _scaling(dts * jnp.where(lam > 0, lam, 0.0), _MU_MAX)
    k = jnp.arange(M + 1, dtype=Q.dtype)
    w = jnp.exp(-h[:, None] + xlogy(k, h[:, None]) - gammaln(k + 1.0))  # (N, M+1)
    P = jnp.einsum("nk,kij->nij", w, Rp)
    return jnp.clip(_by_squarings(lambda s, P: _square_masked(P, s), s, P), 0.0, 1.0)


def _frechet_adjoint(Q, dts, G):
    """``L((Q dt_n)^T, G_n)`` for every gap: Padé-13 Fréchet recursion, per-gap squaring."""
    Xp, s, c = _pade_setup(Q, dts)
    wu, wv = _pade_weights(c, Q.dtype)
    Y = jnp.swapaxes(Xp, -1, -2)  # powers of X^T
    b = jnp.asarray(_B13, Q.dtype)
    E = G / jnp.exp2(s)[:, None, None]
    c1 = c[:, None, None]
    A1, A2, A4, A6 = c1 * Y[1], c1**2 * Y[2], c1**4 * Y[4], c1**6 * Y[6]
    M2 = A1 @ E + E @ A1
    M4 = A2 @ M2 + M2 @ A2
    M6 = A4 @ M2 + M4 @ A2
    W1 = b[13] * A6 + b[11] * A4 + b[9] * A2
    Z1 = b[12] * A6 + b[10] * A4 + b[8] * A2
    k = jnp.arange(13)
    ww = jnp.where(k % 2 == 0, b[1:] * c[:, None] ** k, 0.0)  # W = sum_{k even} b_{k+1} A^k
    W = jnp.einsum("nk,kij->nij", ww, Y[:13])
    U = jnp.einsum("nk,kij->nij", wu, Y)
    V = jnp.einsum("nk,kij->nij", wv, Y)
    Lw1 = b[13] * M6 + b[11] * M4 + b[9] * M2
    Lw2 = b[7] * M6 + b[5] * M4 + b[3] * M2
    Lz1 = b[12] * M6 + b[10] * M4 + b[8] * M2
    Lz2 = b[6] * M6 + b[4] * M4 + b[2] * M2
    Lw = A6 @ Lw1 + M6 @ W1 + Lw2
    Lu = A1 @ Lw + E @ W
    Lv = A6 @ Lz1 + M6 @ Z1 + Lz2
    R = _solve(V - U, V + U)
    L = _solve(V - U, Lu + Lv + (Lu - Lv) @ R)

    return _by_squarings(_square_frechet, s, R, L)


def _square_frechet(s, R, L):
    """``(R, L) <- (R^2, R L + L R)`` ``s[n]`` times: squaring of ``exp`` and its derivative."""

    def body(carry):
        i, R, L = carry
        on = (i < s)[:, None, None]
        return i + 1, jnp.where(on, R @ R, R), jnp.where(on, R @ L + L @ R, L)

    smax = jnp.max(s, initial=0)
    return lax.while_loop(lambda cr: cr[0] < smax, body, (jnp.int32(0), R, L))[2]


def _with_frechet_vjp(impl):
    """Wrap a forward ``impl(Q, dts) -> P`` with the exact Fréchet-adjoint VJP."""
    f = jax.custom_vjp(impl)

    def fwd(Q, dts):
        P = impl(Q, dts)
        return P, (Q, dts, P)

    def bwd(res, G):
        Q, dts, P = res
        L = _frechet_adjoint(Q, dts, G)
        dQ = jnp.einsum("n,nij->ij", dts, L)
        ddts = jnp.einsum("nij,nij->n", G, jnp.einsum("ik,nkj->nij", Q, P))
        return dQ, ddts

    f.defvjp(fwd, bwd)
    return f


expm_pade = _with_frechet_vjp(_expm_pade_fwd_impl)
expm_pade.__doc__ = "``expm(Q * dts[n])`` (N, K, K) by shared-power Padé-13 scaling and squaring."
expm_uniformization = _with_frechet_vjp(_expm_unif_fwd_impl)
expm_uniformization.__doc__ = """``expm(Q * dts[n])`` (N, K, K) by uniformization + squaring."""


def _exprel_neg(x):
    """``(1 - exp(-x)) / x`` for ``x >= 0``, equal to 1 at 0."""
    xs = jnp.where(x > 0, x, 1.0)
    return jnp.where(x > 0, -jnp.expm1(-xs) / xs, 1.0)


@jax.custom_jvp
def _sym_expm(S, dts):
    """``expm(sym(S) * dts[n])`` through one ``eigh``; S (K, K) symmetric up to rounding."""
    lam, U = jnp.linalg.eigh(0.5 * (S + S.T))
    lam = jnp.minimum(lam, 0.0)
    return jnp.einsum("ik,nk,jk->nij", U, jnp.exp(dts[:, None] * lam), U)


@_sym_expm.defjvp
def _sym_expm_jvp(primals, tangents):
    S, dts = primals
    dS, ddts = tangents
    lam, U = jnp.linalg.eigh(0.5 * (S + S.T))
    lam = jnp.minimum(lam, 0.0)
    t = dts[:, None, None]
    E = jnp.exp(dts[:, None] * lam)
    F = jnp.einsum("ik,nk,jk->nij", U, E, U)
    hi = jnp.maximum(lam[:, None], lam[None, :])
    gap = jnp.abs(lam[:, None] - lam[None, :])
    Phi = t * jnp.exp(t * hi) * _exprel_neg(t * gap)  # (N, K, K) divided differences
    dSt = U.T @ dS @ U
    dF = jnp.einsum("ik,nkl,jl->nij", U, Phi * dSt, U)
    dF = dF + jnp.einsum("ik,nk,jk->nij", U, ddts[:, None] * lam * E, U)
    return F, dF


def expm_eigh(Q: Array, dts: Array, pi: Array) -> Array:
    """``expm(Q * dts[n])`` (N, K, K) for a reversible Q with stationary ``pi > 0``.

    ``pi`` is treated as a constant: the similarity transform cancels exactly, so the
    derivative with respect to Q is exact without differentiating ``pi``.
    """
    d = jnp.sqrt(lax.stop_gradient(pi))
    S = Q * d[:, None] / d[None, :]
    F = _sym_expm(S, dts)
    return jnp.maximum(F * d[None, None, :] / d[None, :, None], 0.0)

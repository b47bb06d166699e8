"""Triton kernel: the whole semantic field forward for a tile of points, on chip.

One program evaluates ``BLOCK_P`` points of one batch element as ``BLOCK_P x VP`` (point,
view) rows: it projects every row, tests visibility, bilinearly samples the projected
feature map (NHWC, ``hidden`` channels per pixel), adds the first layer's embedding terms,
runs the per-view residual blocks with one ``tl.dot`` per layer over all rows, then takes the
masked mean (and variance) over each point's views, runs both heads on ``BLOCK_P`` rows and
writes only logits, rgb, density and the visible-view count. Nothing of size
[points, views, hidden] ever reaches global memory. The options of the shipped models (source
colours, the measured-depth cue, the depth evidence, extrapolation past the images) are
compile-time switches of the same kernel (``field_forward_kernel``'s docstring).

The Python side (weight packing, dispatch, the contract of ``SemanticField.forward``) is
:mod:`viewseg_core.model.fused_field`; this module holds only ``@triton.jit`` code, so
that :mod:`viewseg_core.kernels` can load a second copy of it under ``TRITON_INTERPRET=1``
(triton decides compiled vs interpreted when ``@triton.jit`` runs, i.e. at import).

Only core builtin ``tl.*`` ops are used (no ``libdevice``/``extra``), so it compiles with
the triton that ships beside torch 2.x on the GPU machine. Nor does it call triton's own
``@jit`` library helpers (``tl.zeros``, ``tl.sum``, ``tl.max``, ``tl.sigmoid``, ...): those
are compiled-or-interpreted as of the process's first ``import triton``, so in a process
that imported triton without ``TRITON_INTERPRET=1`` they cannot run inside the interpreted
copy. Hence ``tl.reduce`` with ``tl.sum``'s combine function (a ``@jit`` function too,
but one triton's interpreter reduces with numpy without calling it), and a masked store
instead of a row sum.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _mm(a, w, DOT: tl.constexpr):
    """a [P, K] float32 @ w [K, N] -> [P, N] float32.

    DOT: 0 = IEEE float32 operands (no TF32); 1 = bfloat16 operands (w is bf16), float32
    accumulation (tensor cores); 2 = the same numbers as 1 on float32 hardware: ``a`` rounded
    to bf16 and back, w holds bf16-representable float32 values (the interpreter, whose
    ``tl.dot`` multiplies the raw uint16 storage of bf16 operands in triton 3.8).
    """
    if DOT == 1:
        r = tl.dot(a.to(tl.bfloat16), w, out_dtype=tl.float32)
    elif DOT == 2:
        r = tl.dot(a.to(tl.bfloat16).to(tl.float32), w, input_precision="ieee", out_dtype=tl.float32)
    else:
        r = tl.dot(a, w, input_precision="ieee", out_dtype=tl.float32)
    return r


@triton.jit
def _load_w(ptr, K: tl.constexpr, N: tl.constexpr):
    """A row-major [K, N] weight tile (in x out)."""
    rk = tl.arange(0, K)
    rn = tl.arange(0, N)
    return tl.load(ptr + rk[:, None] * N + rn[None, :])


@triton.jit
def _resblock(x, w_ptr, b_ptr, H: tl.constexpr, DOT: tl.constexpr):
    """``x + fc1(relu(fc0(relu(x))))``; w_ptr: [2, H, H] (in x out), b_ptr: [2, H]."""
    rh = tl.arange(0, H)
    t = _mm(tl.maximum(x, 0.0), _load_w(w_ptr, H, H), DOT) + tl.load(b_ptr + rh)[None, :]
    t = tl.maximum(t, 0.0)
    return x + (_mm(t, _load_w(w_ptr + H * H, H, H), DOT) + tl.load(b_ptr + H + rh)[None, :])


@triton.jit
def _harmonic_term(c0, c1, c2, freq_ptr, w_id_ptr, w_sin_ptr, w_cos_ptr,
                   L: tl.constexpr, LS: tl.constexpr, KP: tl.constexpr, H: tl.constexpr,
                   DOT: tl.constexpr):
    """``W [c, sin(c f), cos(c f)]`` for a [P] x 3 coordinate tile -> [P, H] float32.

    HarmonicEmbedding's layout: [c_0..c_2, sin(c_i f_k) at 3 + i L + k, cos(... ) after].
    The identity part is three rank-1 updates (fp32); sin and cos are computed once per
    (coordinate, frequency) on a [P, KP] tile (KP = 3L padded to a power of two >= 16) and
    multiplied by the matching weight rows (zero rows past 3L).
    w_id_ptr: [3, H] fp32; w_sin_ptr, w_cos_ptr: [KP, H]; freq_ptr: [max(L, 1)].
    """
    rh = tl.arange(0, H)
    acc = c0[:, None] * tl.load(w_id_ptr + rh)[None, :]
    acc += c1[:, None] * tl.load(w_id_ptr + H + rh)[None, :]
    acc += c2[:, None] * tl.load(w_id_ptr + 2 * H + rh)[None, :]
    if L > 0:
        col = tl.arange(0, KP)
        live = col < 3 * L
        dim = col // LS
        freq = tl.load(freq_ptr + (col % LS), mask=live, other=0.0)
        coord = tl.where(dim[None, :] == 0, c0[:, None], tl.where(dim[None, :] == 1, c1[:, None], c2[:, None]))
        arg = coord * freq[None, :]                       # exact as in torch: freq = 2^k
        # Reduce to [-pi, pi] first (Cody-Waite, 2 pi in three parts whose products with k
        # are exact): arguments reach 2^9 x ~ 10^3 rad, and the GPU's fast sin/cos lose
        # accuracy with the argument's size where an accurate reduction does not.
        k = tl.floor(arg * 0.15915494309189535 + 0.5)
        arg = ((arg - k * 6.28125) - k * 1.93500518798828125e-3) - k * 3.019915981956753e-7
        s = tl.where(live[None, :], tl.sin(arg), 0.0)
        c = tl.where(live[None, :], tl.cos(arg), 0.0)
        acc += _mm(s, _load_w(w_sin_ptr, KP, H), DOT)
        acc += _mm(c, _load_w(w_cos_ptr, KP, H), DOT)
    return acc


@triton.jit
def _add_combine(a, b):
    return a + b


# The sum combine of ``tl.sum``: compiled, the same reduction as ``tl.sum``; interpreted,
# triton recognises it and reduces with numpy (a local combine function is applied element
# by element in Python: 90% of the interpreter's time). Ours where triton lacks it.
_SUM = getattr(getattr(tl, "standard", None), "_sum_combine", None) or _add_combine


@triton.jit
def _bilinear(gx, gy, size_wf, size_hf):
    """grid_sample's arithmetic for grid points (gx, gy) in [-1, 1] on a size_wf x size_hf map
    (``align_corners=False`` unnormalisation, ``padding_mode="border"`` clamp to the outer pixel
    centres): the top-left corner (int32 column, row) and the nw, ne, sw, se weights."""
    ix = ((gx + 1.0) * size_wf - 1.0) / 2.0
    iy = ((gy + 1.0) * size_hf - 1.0) / 2.0
    ix = tl.minimum(tl.maximum(ix, 0.0), size_wf - 1.0)
    iy = tl.minimum(tl.maximum(iy, 0.0), size_hf - 1.0)
    fx0 = tl.floor(ix)
    fy0 = tl.floor(iy)
    return (fx0.to(tl.int32), fy0.to(tl.int32), (fx0 + 1.0 - ix) * (fy0 + 1.0 - iy), (ix - fx0) * (fy0 + 1.0 - iy),
            (fx0 + 1.0 - ix) * (iy - fy0), (ix - fx0) * (iy - fy0))


@triton.jit
def _tap(base, pix, row, stride, wnw, wne, wsw, wse, m00, m10, m01, m11):
    """The weighted sum of a pixel's four corners: ``base + (pix + offset) * stride`` addresses
    them (offset 0, 1, row, row + 1); a corner whose mask is off (past the map, or an invisible
    row) counts 0. Shapes broadcast: per-row scalars, or [rows, 1] against a [1, channels] base."""
    acc = wnw * tl.load(base + pix * stride, mask=m00, other=0.0).to(tl.float32)
    acc += wne * tl.load(base + (pix + 1) * stride, mask=m10, other=0.0).to(tl.float32)
    acc += wsw * tl.load(base + (pix + row) * stride, mask=m01, other=0.0).to(tl.float32)
    acc += wse * tl.load(base + (pix + row + 1) * stride, mask=m11, other=0.0).to(tl.float32)
    return acc


@triton.jit
def _colour_term(c, vis, n, colw_ptr, channel: tl.constexpr, eps, BLOCK_P: tl.constexpr, VP: tl.constexpr,
                 H: tl.constexpr):
    """One colour channel's part of ``W_c [mean, log(var + eps)]``: c [BLOCK_P * VP] (rows
    (point, view)), vis the same, n [BLOCK_P] visible views (>= 1); colw [6, H] (rows: mean of
    channels 0..2, log-variance of channels 0..2) -> [BLOCK_P, H]. The population variance
    E[c^2] - E[c]^2, clamped at 0, as ``masked_mean_var``."""
    c = tl.where(vis, c, 0.0)
    mean = tl.reduce(tl.reshape(c, (BLOCK_P, VP)), 1, _SUM) / n
    var = tl.maximum(tl.reduce(tl.reshape(c * c, (BLOCK_P, VP)), 1, _SUM) / n - mean * mean, 0.0)
    rh = tl.arange(0, H)
    w_mean = tl.load(colw_ptr + channel * H + rh)
    w_var = tl.load(colw_ptr + (3 + channel) * H + rh)
    return mean[:, None] * w_mean[None, :] + tl.log(var + eps)[:, None] * w_var[None, :]


@triton.jit
def _max_combine(a, b):
    return tl.maximum(a, b)


@triton.jit
def _tanh(x):
    """tanh without libdevice: 1 - 2 / (exp(2x) + 1), x clamped to +-15 first (float32 tanh is
    already +-1 there, and exp stays finite)."""
    x = tl.minimum(tl.maximum(x, -15.0), 15.0)
    return 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)


@triton.jit
def _per_row(x, BLOCK_P: tl.constexpr, VP: tl.constexpr):
    """A per-point [BLOCK_P] value repeated on each of the point's VP (point, view) rows."""
    return tl.reshape(tl.broadcast_to(x[:, None], (BLOCK_P, VP)), (BLOCK_P * VP,))


@triton.jit
def _depth_term(diff, known, dscale_ptr, dw_ptr, NS: tl.constexpr, H: tl.constexpr):
    """``DepthEmbedding``: W_z tanh(diff / s) (s over the NS scales) where the depth pixel holds a
    measurement, the learned ``u`` where it does not -> [rows, H]. dscale [NS] = 1 / s;
    dw [NS + 1, H]: W_z's columns, then u."""
    rh = tl.arange(0, H)
    acc = tl.where(known, 0.0, 1.0)[:, None] * tl.load(dw_ptr + NS * H + rh)[None, :]
    for i in tl.static_range(NS):
        e = tl.where(known, _tanh(diff * tl.load(dscale_ptr + i)), 0.0)
        acc += e[:, None] * tl.load(dw_ptr + i * H + rh)[None, :]
    return acc


@triton.jit
def _evidence(seen_known, diff, measured, alpha, BLOCK_P: tl.constexpr, VP: tl.constexpr,
              SIGMA_M: tl.constexpr, SIGMA_REL: tl.constexpr, FREE: tl.constexpr, ONSET: tl.constexpr,
              EDGE: tl.constexpr):
    """``DepthEvidence`` per point (rows (point, view) -> [BLOCK_P]): carve (more views saw
    through the point than call it surface) and alpha x the largest surface step over the views."""
    sigma = tl.maximum(SIGMA_REL * tl.where(seen_known, measured, 0.0), SIGMA_M)
    z = tl.where(seen_known, diff, 0.0) / sigma
    free = tl.reduce(tl.reshape((seen_known & (z < -FREE)).to(tl.int32), (BLOCK_P, VP)), 1, _SUM)
    shell = seen_known & (tl.abs(z) <= FREE)
    carve = free > tl.reduce(tl.reshape(shell.to(tl.int32), (BLOCK_P, VP)), 1, _SUM)
    # The sigmoid's argument clamped to +-30 (only |z| <= FREE, where it is within +-16, counts).
    step = (1.0 / (1.0 + tl.exp(tl.minimum(tl.maximum(-EDGE * (z + ONSET), -30.0), 30.0)))) / sigma
    surface = tl.reduce(tl.reshape(tl.where(shell, step, 0.0), (BLOCK_P, VP)), 1, _max_combine)
    return carve, alpha * surface


@triton.jit
def field_forward_kernel(
    pts_ptr, dirs_ptr, cam_ptr, valid_ptr, maps_ptr, col_ptr, colw_ptr, depth_ptr, dscale_ptr, dw_ptr,
    fx_ptr, fd_ptr,
    wx_id_ptr, wx_sin_ptr, wx_cos_ptr,
    wd_id_ptr, wd_sin_ptr, wd_cos_ptr, b_in_ptr,
    blk_w_ptr, blk_b_ptr,
    pool_w_ptr, pool_b_ptr,
    head_w_ptr, head_b_ptr,
    sem_w_ptr, sem_b_ptr, rgbd_w_ptr, rgbd_b_ptr,
    logits_ptr, rgb_ptr, density_ptr, count_ptr,
    N, S, V, C,
    img_w, img_h, grid_sx, grid_sy, map_w, map_h, map_wf, map_hf, col_w, col_h, col_plane, col_wf, col_hf, col_eps,
    dep_w, dep_plane, dep_sx, dep_sy, dep_wf, dep_hf, ev_alpha, grid_limit,
    H: tl.constexpr, LX: tl.constexpr, LXS: tl.constexpr, XP: tl.constexpr,
    LD: tl.constexpr, LDS: tl.constexpr, DP: tl.constexpr,
    NB: tl.constexpr, NHB: tl.constexpr, CP: tl.constexpr, MEAN_VAR: tl.constexpr,
    BLOCK_P: tl.constexpr, VP: tl.constexpr, DOT: tl.constexpr, SRC_RGB: tl.constexpr,
    SRC_DEPTH: tl.constexpr, HAS_DEPTH: tl.constexpr, NS: tl.constexpr, EVIDENCE: tl.constexpr,
    EV_SIGMA_M: tl.constexpr, EV_SIGMA_REL: tl.constexpr, EV_FREE: tl.constexpr, EV_ONSET: tl.constexpr,
    EV_EDGE: tl.constexpr, EXTRAPOLATE: tl.constexpr,
):
    """Grid (cdiv(N, BLOCK_P), B). Shapes (all contiguous):

    pts [B, N, 3] f32 (N = R S, point n on ray n // S); dirs [B, R, 3] f32;
    cam [B, V, 21] f32: c2w rotation row-major (9), c2w translation (3), K row-major (9);
    valid [B, V] i32; maps [B V, map_h, map_w, H] f32 (projected features, NHWC);
    fx [max(LX, 1)], fd [max(LD, 1)] f32: harmonic frequencies;
    wx_id [3, H] f32, wx_sin/wx_cos [XP, H]; wd_id [3, H] f32, wd_sin/wd_cos [DP, H]; b_in [H] f32;
    blk_w [NB, 2, H, H], blk_b [NB, 2, H] f32; pool_w [2, H, H] (mean, variance), pool_b [H];
    head_w [2, NHB, 2, H, H] (semantic, rgb+density), head_b [2, NHB, 2, H];
    sem_w [H, CP], sem_b [CP]; rgbd_w [H, 16], rgbd_b [16]  (matrices in x out, the dot dtype);
    out: logits [B, N, C] f32, rgb [B, N, 3] f32, density [B, N] f32, count [B, N] i64.
    img_w/img_h: source image size; grid_sx/grid_sy: float32(2 / width), float32(2 / height)
    (``pixels_to_grid``); map_w/map_h: feature map size (ints), map_wf/map_hf: the same as floats
    (an int argument equal to 1 is specialised to a constant, which has no ``.to``).
    VP: V rounded up to a power of two (views past V are masked out).
    SRC_RGB (``source_rgb``): col [B V, 3, col_h, col_w] f32 (col_plane = col_h col_w), the source images (NCHW), sampled
    bilinearly at the same grid point as the features (full resolution, border padding);
    colw [6, H] f32, the colour layer ``W_c`` (in x out) applied to [mean colour, log(colour
    variance + col_eps)] over the visible views and added to the pooled state. Without it,
    col/colw are unused.
    SRC_DEPTH (``source_depth``): the depth cue of ``DepthEmbedding`` on every row (dscale [NS]
    = 1 / s, dw [NS + 1, H] = W_z's columns then u); HAS_DEPTH: the sources carry depth, depth
    [B V, dep_h, dep_w] f32 (dep_plane = dep_h dep_w; dep_sx = float32(dep_w / width), ...),
    read at the nearest pixel; without it every row is "unknown". EVIDENCE (``depth_evidence``,
    needs SRC_DEPTH): ``DepthEvidence`` on the density, ev_alpha = exp(log_alpha), the EV_*
    constants those of viewseg_core.model.field. EXTRAPOLATE (``unseen_points="extrapolate"``):
    a point no view sees is pooled over the views it lies in front of, features and colours
    read at its projection clamped to +-grid_limit in grid units (border padding); the stored
    count stays the views that see the point.

    Layout: the per-view part runs on BLOCK_P * VP rows, row = (point, view) with the view
    fastest, so every layer is ONE ``tl.dot`` with M = BLOCK_P * VP: each weight tile is
    loaded once per program instead of once per view, and 16 points x 4 views already give
    the M = 64 of Hopper's wgmma (a first version looped over views with [BLOCK_P, H]
    accumulators; both layouts spill registers in sm_90 builds, see docs/benchmarks.md).
    The masked sums over views are a reshape to [BLOCK_P, VP, H] and a reduction.
    """
    pid = tl.program_id(0)
    b = tl.program_id(1)
    rr = tl.arange(0, BLOCK_P * VP)
    v = rr % VP                                            # view of the row
    rp = pid * BLOCK_P + rr // VP                          # point of the row
    pmask = rp < N
    vmask = v < V
    rh = tl.arange(0, H)
    row = b.to(tl.int64) * N + rp.to(tl.int64)            # flat point index

    p0 = tl.load(pts_ptr + row * 3 + 0, mask=pmask, other=0.0)
    p1 = tl.load(pts_ptr + row * 3 + 1, mask=pmask, other=0.0)
    p2 = tl.load(pts_ptr + row * 3 + 2, mask=pmask, other=0.0)
    ray = b.to(tl.int64) * (N // S) + (rp // S).to(tl.int64)
    d0 = tl.load(dirs_ptr + ray * 3 + 0, mask=pmask, other=0.0)
    d1 = tl.load(dirs_ptr + ray * 3 + 1, mask=pmask, other=0.0)
    d2 = tl.load(dirs_ptr + ray * 3 + 2, mask=pmask, other=0.0)

    cam = cam_ptr + (b * V + v) * 21
    r00 = tl.load(cam + 0, mask=vmask, other=0.0)
    r01 = tl.load(cam + 1, mask=vmask, other=0.0)
    r02 = tl.load(cam + 2, mask=vmask, other=0.0)
    r10 = tl.load(cam + 3, mask=vmask, other=0.0)
    r11 = tl.load(cam + 4, mask=vmask, other=0.0)
    r12 = tl.load(cam + 5, mask=vmask, other=0.0)
    r20 = tl.load(cam + 6, mask=vmask, other=0.0)
    r21 = tl.load(cam + 7, mask=vmask, other=0.0)
    r22 = tl.load(cam + 8, mask=vmask, other=0.0)
    t0 = tl.load(cam + 9, mask=vmask, other=0.0)
    t1 = tl.load(cam + 10, mask=vmask, other=0.0)
    t2 = tl.load(cam + 11, mask=vmask, other=0.0)
    k00 = tl.load(cam + 12, mask=vmask, other=0.0)
    k01 = tl.load(cam + 13, mask=vmask, other=0.0)
    k02 = tl.load(cam + 14, mask=vmask, other=0.0)
    k10 = tl.load(cam + 15, mask=vmask, other=0.0)
    k11 = tl.load(cam + 16, mask=vmask, other=0.0)
    k12 = tl.load(cam + 17, mask=vmask, other=0.0)
    k20 = tl.load(cam + 18, mask=vmask, other=0.0)
    k21 = tl.load(cam + 19, mask=vmask, other=0.0)
    k22 = tl.load(cam + 20, mask=vmask, other=0.0)
    ok = tl.load(valid_ptr + b * V + v, mask=vmask, other=0)

    # world_to_camera: x_cam = R^T (p - t); d_cam = R^T d.
    q0 = p0 - t0
    q1 = p1 - t1
    q2 = p2 - t2
    x0 = r00 * q0 + r10 * q1 + r20 * q2
    x1 = r01 * q0 + r11 * q1 + r21 * q2
    x2 = r02 * q0 + r12 * q1 + r22 * q2
    # project_points: h = K x, uv = h[:2] / h[2] (|h[2]| < 1e-9 -> 1e-9), in front: z > 0.
    h0 = k00 * x0 + k01 * x1 + k02 * x2
    h1 = k10 * x0 + k11 * x1 + k12 * x2
    h2 = k20 * x0 + k21 * x1 + k22 * x2
    h2 = tl.where(tl.abs(h2) < 1e-9, 1e-9, h2)
    u = h0 / h2
    w = h1 / h2
    front = pmask & vmask & (ok != 0) & (x2 > 0)
    seen = front & (u >= -0.5) & (u < img_w - 0.5) & (w >= -0.5) & (w < img_h - 0.5)
    nseen = tl.reduce(tl.reshape(seen.to(tl.int32), (BLOCK_P, VP)), 1, _SUM)          # [BLOCK_P]
    gx = (u + 0.5) * grid_sx - 1.0
    gy = (w + 0.5) * grid_sy - 1.0
    if EXTRAPOLATE:  # the rows pooled: the seeing views, or (seen by none) the views in front
        vis = tl.where(_per_row(nseen, BLOCK_P, VP) > 0, seen, front)
        gx = tl.minimum(tl.maximum(gx, -grid_limit), grid_limit)
        gy = tl.minimum(tl.maximum(gy, -grid_limit), grid_limit)
    else:
        vis = seen

    # pixels_to_grid, then grid_sample's unnormalisation (align_corners=False) and border
    # padding (clamp to the outer pixel centres); rows not pooled park at 0 and load nothing.
    gx = tl.where(vis, gx, 0.0)
    gy = tl.where(vis, gy, 0.0)
    ax0, ay0, wnw, wne, wsw, wse = _bilinear(gx, gy, map_wf, map_hf)
    in_x1 = (ax0 + 1) < map_w
    in_y1 = (ay0 + 1) < map_h
    vmap = tl.where(vmask, b * V + v, 0)
    pix = vmap.to(tl.int64) * map_h * map_w + ay0.to(tl.int64) * map_w + ax0.to(tl.int64)
    hv = _tap(maps_ptr + rh[None, :], pix[:, None], map_w, H, wnw[:, None], wne[:, None], wsw[:, None],
              wse[:, None], vis[:, None], (vis & in_x1)[:, None], (vis & in_y1)[:, None],
              (vis & in_x1 & in_y1)[:, None])

    if SRC_RGB:
        # The source colours at the same grid point: grid_sample at the image's own size.
        cax, cay, cnw, cne, csw, cse = _bilinear(gx, gy, col_wf, col_hf)
        c_x1 = vis & ((cax + 1) < col_w)
        c_y1 = vis & ((cay + 1) < col_h)
        c_11 = c_x1 & ((cay + 1) < col_h)
        cpix = vmap.to(tl.int64) * 3 * col_plane + cay.to(tl.int64) * col_w + cax.to(tl.int64)
        c0 = _tap(col_ptr, cpix, col_w, 1, cnw, cne, csw, cse, vis, c_x1, c_y1, c_11)
        c1 = _tap(col_ptr + col_plane, cpix, col_w, 1, cnw, cne, csw, cse, vis, c_x1, c_y1, c_11)
        c2 = _tap(col_ptr + 2 * col_plane, cpix, col_w, 1, cnw, cne, csw, cse, vis, c_x1, c_y1, c_11)

    # First layer: W_x gamma(x_v) + W_d gamma(d_v) + b + (W_f F_v)(pi_v(x)).
    e0 = r00 * d0 + r10 * d1 + r20 * d2
    e1 = r01 * d0 + r11 * d1 + r21 * d2
    e2 = r02 * d0 + r12 * d1 + r22 * d2
    hv += _harmonic_term(x0, x1, x2, fx_ptr, wx_id_ptr, wx_sin_ptr, wx_cos_ptr, LX, LXS, XP, H, DOT)
    hv += _harmonic_term(e0, e1, e2, fd_ptr, wd_id_ptr, wd_sin_ptr, wd_cos_ptr, LD, LDS, DP, H, DOT)
    hv += tl.load(b_in_ptr + rh)[None, :]
    if SRC_DEPTH:
        if HAS_DEPTH:  # the nearest depth pixel (pixel areas), as SemanticField.depth_difference
            dcol = tl.minimum(tl.maximum(tl.floor((u + 0.5) * dep_sx), 0.0), dep_wf - 1.0).to(tl.int32)
            drow = tl.minimum(tl.maximum(tl.floor((w + 0.5) * dep_sy), 0.0), dep_hf - 1.0).to(tl.int32)
            dpix = vmap.to(tl.int64) * dep_plane + drow.to(tl.int64) * dep_w + dcol.to(tl.int64)
            measured = tl.load(depth_ptr + dpix, mask=pmask & vmask, other=0.0)
            known = (measured > 0.0) & (measured < 3.0e38)                 # NaN and inf fail both
        else:
            measured = x2 * 0.0
            known = rr < 0
        diff = tl.where(known, x2 - measured, 0.0)
        hv += _depth_term(diff, known, dscale_ptr, dw_ptr, NS, H)
    for i in tl.static_range(NB):
        hv = _resblock(hv, blk_w_ptr + i * 2 * H * H, blk_b_ptr + i * 2 * H, H, DOT)

    # Masked mean (and variance) over the views that see each point.
    hv = tl.where(vis[:, None], hv, 0.0)
    count = tl.reduce(tl.reshape(vis.to(tl.int32), (BLOCK_P, VP)), 1, _SUM)          # [BLOCK_P]
    n = tl.maximum(count, 1).to(tl.float32)[:, None]
    mean = tl.reduce(tl.reshape(hv, (BLOCK_P, VP, H)), 1, _SUM) / n
    if MEAN_VAR:
        var = tl.reduce(tl.reshape(hv * hv, (BLOCK_P, VP, H)), 1, _SUM) / n
        var = tl.maximum(var - mean * mean, 0.0)
        h = _mm(mean, _load_w(pool_w_ptr, H, H), DOT) + _mm(var, _load_w(pool_w_ptr + H * H, H, H), DOT)
        h += tl.load(pool_b_ptr + rh)[None, :]
    else:
        h = mean
    if SRC_RGB:
        # + W_c [mean_v c_v, log(var_v c_v + eps)] over the visible views: six rank-1 updates.
        nc = tl.maximum(count, 1).to(tl.float32)
        h += _colour_term(c0, vis, nc, colw_ptr, 0, col_eps, BLOCK_P, VP, H)
        h += _colour_term(c1, vis, nc, colw_ptr, 1, col_eps, BLOCK_P, VP, H)
        h += _colour_term(c2, vis, nc, colw_ptr, 2, col_eps, BLOCK_P, VP, H)

    # Per point from here: BLOCK_P rows.
    pp = pid * BLOCK_P + tl.arange(0, BLOCK_P)
    pm = pp < N
    prow = b.to(tl.int64) * N + pp.to(tl.int64)

    # Semantic head.
    hs = h
    for i in tl.static_range(NHB):
        hs = _resblock(hs, head_w_ptr + i * 2 * H * H, head_b_ptr + i * 2 * H, H, DOT)
    rc = tl.arange(0, CP)
    logits = _mm(tl.maximum(hs, 0.0), _load_w(sem_w_ptr, H, CP), DOT) + tl.load(sem_b_ptr + rc)[None, :]
    tl.store(logits_ptr + prow[:, None] * C + rc[None, :], logits, mask=pm[:, None] & (rc[None, :] < C))

    # RGB + density head.
    hr = h
    for i in tl.static_range(NHB):
        hr = _resblock(hr, head_w_ptr + (NHB + i) * 2 * H * H, head_b_ptr + (NHB + i) * 2 * H, H, DOT)
    r4 = tl.arange(0, 16)
    raw = _mm(tl.maximum(hr, 0.0), _load_w(rgbd_w_ptr, H, 16), DOT) + tl.load(rgbd_b_ptr + r4)[None, :]
    rgb = 1.0 / (1.0 + tl.exp(-raw))
    tl.store(rgb_ptr + prow[:, None] * 3 + r4[None, :], rgb, mask=pm[:, None] & (r4[None, :] < 3))
    # Density = softplus(raw[:, 3]) (torch: threshold 20), as max(x, 0) + log1p(exp(-|x|))
    # with a series for tiny arguments (no log1p in core tl), computed on the whole [P, 16]
    # tile and stored from column 3 only (a store, not a row sum: see the module docstring).
    e = tl.exp(-tl.abs(raw))
    l1p = tl.where(e < 1e-4, e - 0.5 * e * e, tl.log(1.0 + e))
    sp = tl.where(raw > 20.0, raw, tl.maximum(raw, 0.0) + l1p)
    sp = tl.where((count > 0)[:, None], sp, 0.0)
    if EVIDENCE:
        carve, surface = _evidence(seen & known, diff, measured, ev_alpha, BLOCK_P, VP, EV_SIGMA_M, EV_SIGMA_REL,
                                   EV_FREE, EV_ONSET, EV_EDGE)
        sp = tl.where(carve[:, None], 0.0, sp + surface[:, None])
    tl.store(density_ptr + prow[:, None] + r4[None, :] * 0, sp, mask=pm[:, None] & (r4[None, :] == 3))
    tl.store(count_ptr + prow, nseen.to(tl.int64), mask=pm)

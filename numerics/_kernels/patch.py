"""Numba kernels of the patch denoiser (THEORY.md 3.3).

Vocabulary shared with :mod:`diffcrit.numerics.patch_denoiser`:

* a *query* is the window of a field at one pixel, ``y[i + W]`` (``K`` values);
* the patch set is *packed* into panels of ``W`` patches (8 in float64, 16 in float32),
  ``panels[p, k, w] = phi_{pW + w}(r_k)``: a panel is ``K x W`` contiguous values, read
  by the register-blocked micro-kernel (:func:`_make_panel_kernel`). ``centre[a] =
  phi_a(0)`` and ``bias[a]`` are indexed by packed position; ``patches_t[k, a]`` is the
  same packed set transposed (rows contiguous along patches);
* each query is scored against one contiguous range of packed patches (all of them in
  the equivariant mode, those of its own position in the local mode); ranges start at
  multiples of ``W``, the gaps are zero patches that no weight reads.

Log weights, up to a constant that cancels in the softmax:

* *direct* form: ``l_a = bias_a - scale/2 |y - phi_a|^2`` with ``bias_a = log m_a``;
* *expanded* form: ``l_a = bias_a + scale (y . phi_a)`` with
  ``bias_a = log m_a - scale/2 |phi_a|^2`` (the ``|y|^2`` term is common to all patches
  of a query), one fused multiply-add per (pixel, patch, offset).

``scale = 1/s^2`` and ``m_a`` is the multiplicity of a merged patch. The softmax is
streamed over blocks of patches: a block's logits are computed into a buffer (four
pixels at a time, as a small matrix product held in registers), its maximum updates the
running maximum (rescaling the running sums once per block, not per element), then the
block's weights ``exp(l - max) <= 1`` are summed. Nothing overflows, and nothing
underflows to 0/0 because the largest weight is exactly 1.

The exponential is a polynomial (:func:`exp_nonpositive`) that LLVM vectorizes; the
library ``exp`` would be a scalar call. Three pieces are written directly as LLVM vector
code (``numba.extending.intrinsic``) because the loop vectorizer does not produce them
from scalar Python: the micro-kernel, the maximum of a buffer, and the weighted sums of
the posterior moments. All kernels are
compiled with ``fastmath``: they are NaN-safe because the public layer rejects
non-finite inputs and no kernel uses infinities (the running maximum starts from the
first block, not from ``-inf``).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from diffcrit.numerics._jit import njit

# --------------------------------------------------------------------------------------
# exp(x) for x <= 0, vectorizable
# --------------------------------------------------------------------------------------


@intrinsic
def _float_bits(typingctx, x):
    """Reinterpret a float64 (float32) as int64 (int32), bit for bit."""
    if not isinstance(x, types.Float):
        return None
    int_type = types.int64 if x.bitwidth == 64 else types.int32

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(x.bitwidth))

    return int_type(x), codegen


@intrinsic
def _bits_float(typingctx, n):
    """Reinterpret an int64 (int32) as float64 (float32), bit for bit."""
    if not isinstance(n, types.Integer) or n.bitwidth not in (32, 64):
        return None
    float_type = types.float64 if n.bitwidth == 64 else types.float32
    llvm_type = ir.DoubleType() if n.bitwidth == 64 else ir.FloatType()

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_type)

    return float_type(n), codegen


@intrinsic
def _leading_max(typingctx, values, count):
    """``max(values[:count])`` for a contiguous float array, ``count >= 1``, vectorized.

    Written as LLVM vector code (``llvm.maxnum`` on 256-bit vectors) because the loop
    vectorizer does not turn a scalar max reduction into vector code here.
    """
    if not (isinstance(values, types.Array) and values.ndim == 1 and values.layout == "C"
            and isinstance(values.dtype, types.Float) and isinstance(count, types.Integer)):
        return None
    signature = values.dtype(values, types.intp)

    def codegen(context, builder, sig, args):
        array = context.make_array(sig.args[0])(context, builder, args[0])
        count = args[1]
        element = context.get_data_type(sig.args[0].dtype)
        item_bytes = sig.args[0].dtype.bitwidth // 8
        lanes = 32 // item_bytes
        vector = ir.VectorType(element, lanes)
        suffix = f"f{sig.args[0].dtype.bitwidth}"
        scalar_max = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(element, [element, element]), "llvm.maxnum." + suffix)
        vector_max = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector, [vector, vector]), f"llvm.maxnum.v{lanes}{suffix}")
        index_type = count.type
        best = cgutils.alloca_once(builder, element)
        builder.store(builder.load(array.data), best)
        n_vectors = builder.udiv(count, ir.Constant(index_type, lanes))
        with builder.if_then(builder.icmp_unsigned(">", n_vectors, ir.Constant(index_type, 0))):
            running = cgutils.alloca_once(builder, vector)
            first = builder.bitcast(array.data, vector.as_pointer())
            builder.store(builder.load(first, align=item_bytes), running)
            with cgutils.for_range(builder, n_vectors) as loop:
                offset = builder.mul(loop.index, ir.Constant(index_type, lanes))
                pointer = builder.bitcast(builder.gep(array.data, [offset]), vector.as_pointer())
                builder.store(builder.call(vector_max, [builder.load(running), builder.load(pointer, align=item_bytes)]),
                              running)
            reduced = builder.load(running)
            for lane in range(lanes):
                value = builder.extract_element(reduced, ir.Constant(ir.IntType(32), lane))
                builder.store(builder.call(scalar_max, [builder.load(best), value]), best)
        # the < lanes leftover elements, unrolled: a scalar maxnum loop here makes the loop
        # vectorizer of numba's LLVM (an assertion-enabled build) abort the process
        tail_start = builder.mul(n_vectors, ir.Constant(index_type, lanes))
        for extra in range(lanes - 1):
            position = builder.add(tail_start, ir.Constant(index_type, extra))
            with builder.if_then(builder.icmp_unsigned("<", position, count)):
                pointer = builder.gep(array.data, [position])
                builder.store(builder.call(scalar_max, [builder.load(best), builder.load(pointer)]), best)
        return builder.load(best)

    return signature, codegen


def _exp_polynomial(degree: int) -> tuple[float, ...]:
    """``(c_2, ..., c_degree)`` with ``exp(r) ~ 1 + r + r^2 (c_2 + c_3 r + ...)``, ``|r| <= ln2/2``.

    Least squares in the relative error on Chebyshev nodes (close to minimax: about
    ``2^-degree`` times the Taylor truncation error). Checked against ``numpy.exp`` in
    the tests.
    """
    nodes = 0.5 * math.log(2.0) * np.cos(np.pi * (np.arange(4000) + 0.5) / 4000)
    powers = np.stack([nodes ** (k + 2) for k in range(degree - 1)], axis=1)
    weight = np.exp(-nodes)
    rhs = (np.expm1(nodes) - nodes) * weight
    coefficients, *_ = np.linalg.lstsq(powers * weight[:, None], rhs, rcond=None)
    return tuple(float(c) for c in coefficients)


# x = n ln2 + r with |r| <= ln2/2; exp(r) by a polynomial; 2^n by building the exponent
# bits. n is rounded with floor(.+0.5), not with the "add 1.5*2^52" trick, because
# fastmath may cancel that trick's add/subtract pair.
_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 split so that n * _LN2_HI is exact for |n| < 2^11
_LN2_LO = 1.9082149292705877e-10
_SHIFT64 = 6755399441055744.0  # 1.5 * 2^52: adding it puts an integer n in the low bits
_SHIFT64_BITS = int(np.float64(_SHIFT64).view(np.int64))
# degree 11: truncation ~0.347^12/12!/2^11 < 1e-19; rounding dominates (~2e-16)
_Q64 = _exp_polynomial(11)
_EXP64_FLOOR = -708.0  # 2^n stays a normal float64 (n >= -1021); below it the result is 0

_LOG2E_32 = np.float32(_LOG2E)
_LN2_HI_32 = np.float32(0.693359375)  # 10 significant bits: n * hi exact for |n| < 2^13
_LN2_LO_32 = np.float32(-2.12194440e-4)
_SHIFT32 = np.float32(12582912.0)  # 1.5 * 2^23
_SHIFT32_BITS = int(np.float32(12582912.0).view(np.int32))
# degree 6: truncation ~0.347^7/7!/2^6 < 2e-9, below float32's 6e-8
_Q32 = tuple(np.float32(c) for c in _exp_polynomial(6))
_EXP32_FLOOR = np.float32(-87.0)  # exp(-87) ~ 1.6e-38, still a normal float32; below: 0
_HALF32 = np.float32(0.5)
_ONE32 = np.float32(1.0)


def exp_nonpositive(x):
    """``exp(x)`` for ``x <= 0`` (float64 or float32), vectorizable inside Numba loops.

    Relative error below ~5e-16 (float64) and ~2e-7 (float32) for ``x`` in
    ``[-40, 0]``, growing like ``|x| * 2e-17`` further out (the argument itself carries
    that rounding). Below ``-708`` (float64) or ``-87`` (float32) it returns exactly 0
    instead of a subnormal (a weight that small is below the rounding of any sum whose
    largest term is 1).

    In plain Python this evaluates ``numpy.exp``; in Numba code it is the polynomial.
    """
    return np.exp(x)


@overload(exp_nonpositive, inline="always")
def _exp_nonpositive_impl(x):
    if isinstance(x, types.Float) and x.bitwidth == 64:

        def exp64(x):
            argument = x
            x = max(argument, _EXP64_FLOOR)
            n = np.floor(x * _LOG2E + 0.5)
            r = x - n * _LN2_HI - n * _LN2_LO
            p = _Q64[9]
            p = p * r + _Q64[8]
            p = p * r + _Q64[7]
            p = p * r + _Q64[6]
            p = p * r + _Q64[5]
            p = p * r + _Q64[4]
            p = p * r + _Q64[3]
            p = p * r + _Q64[2]
            p = p * r + _Q64[1]
            p = p * r + _Q64[0]
            p = p * (r * r) + r + 1.0
            # below the floor the exponent bits are masked off: 2^n becomes 0.0 (no branch)
            exponent = ((_float_bits(n + _SHIFT64) - _SHIFT64_BITS + 1023) << 52) & -np.int64(argument >= _EXP64_FLOOR)
            return p * _bits_float(exponent)

        return exp64
    if isinstance(x, types.Float) and x.bitwidth == 32:

        def exp32(x):
            argument = x
            x = max(argument, _EXP32_FLOOR)
            n = np.floor(x * _LOG2E_32 + _HALF32)
            r = x - n * _LN2_HI_32 - n * _LN2_LO_32
            p = _Q32[4]
            p = p * r + _Q32[3]
            p = p * r + _Q32[2]
            p = p * r + _Q32[1]
            p = p * r + _Q32[0]
            p = p * (r * r) + r + _ONE32
            # numba widens int32 arithmetic to int64; narrow back before the bitcast
            exponent = np.int32(((_float_bits(n + _SHIFT32) - _SHIFT32_BITS + 127) << 23)
                                & -np.int64(argument >= _EXP32_FLOOR))
            return p * _bits_float(exponent)

        return exp32
    return None


@njit(fastmath=True)
def exp_nonpositive_array(x, out):
    """Apply :func:`exp_nonpositive` elementwise (``out[:] = exp(x)``); for tests."""
    for j in range(x.size):
        out[j] = exp_nonpositive(x[j])


# --------------------------------------------------------------------------------------
# logits of one block of patches
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# streaming softmax
# --------------------------------------------------------------------------------------


@njit(fastmath=True)
def _raise_running_max(logits, nb, slot, log_max, sums, n_sums):
    """Fold a block's maximum into the running maximum of ``slot``.

    ``sums[slot, :n_sums]`` are sums of weights relative to ``log_max[slot]``; they are
    rescaled when the maximum rises. ``sums[slot, 0] == 0`` marks "no block seen yet"
    (after the first block it is >= 1: the largest weight is exp(0)).
    """
    block_max = _leading_max(logits, nb)
    if sums[slot, 0] == 0.0:
        log_max[slot] = block_max
    elif block_max > log_max[slot]:
        factor = math.exp(log_max[slot] - block_max)
        for i in range(n_sums):
            sums[slot, i] *= factor
        log_max[slot] = block_max


@njit(fastmath=True)
def _accumulate_mean(logits, nb, centre, j0, slot, log_max, sums):
    """Add a block to ``sums[slot] = (sum w, sum w phi(0))``, ``w = exp(l - max)``."""
    _raise_running_max(logits, nb, slot, log_max, sums, 2)
    reference = logits.dtype.type(log_max[slot])
    c = centre[j0:j0 + nb]
    zero = logits.dtype.type(0)
    total = zero
    weighted = zero
    for j in range(nb):
        w = exp_nonpositive(logits[j] - reference)
        total += w
        weighted += w * c[j]
    sums[slot, 0] += total
    sums[slot, 1] += weighted


# --------------------------------------------------------------------------------------
# register-blocked micro-kernel on packed panels
# --------------------------------------------------------------------------------------

#: SIMD registers (256 bits) per panel row: a panel is ``K x PANEL_WIDTH`` patches.
PANEL_VECTORS = 2


def panel_width(dtype) -> int:
    """Patches per panel: ``PANEL_VECTORS`` 256-bit vectors (8 float64, 16 float32)."""
    return PANEL_VECTORS * 32 // np.dtype(dtype).itemsize


def _vector_codegen(context, builder, dtype, index_type):
    """LLVM pieces shared by the vector micro-kernels: 256-bit vectors of ``dtype``.

    Returns ``(vector type, lanes, const, load_vector, fmuladd)``: ``const(v)`` an
    index constant, ``load_vector(base, offset)`` an unaligned vector load at
    ``base + offset`` elements, ``fmuladd`` the ``llvm.fmuladd`` vector intrinsic.
    """
    element = context.get_data_type(dtype)
    item_bytes = dtype.bitwidth // 8
    lanes = 32 // item_bytes
    vector = ir.VectorType(element, lanes)

    def const(value):
        return ir.Constant(index_type, value)

    def load_vector(base, offset):
        pointer = builder.bitcast(builder.gep(base, [offset]), vector.as_pointer())
        return builder.load(pointer, align=item_bytes)  # unaligned vector load

    fmuladd = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vector, [vector, vector, vector]),
        f"llvm.fmuladd.v{lanes}f{dtype.bitwidth}")
    return vector, lanes, const, load_vector, fmuladd


def _make_panel_kernel(n_queries: int, n_panels: int, direct: bool):
    """Intrinsic computing a ``n_queries x (n_panels * W)`` tile of logits in registers.

    ``kernel(panels, ys, row, bias, out, panel, column)``: for ``a < n_queries`` and the
    ``n_panels * W`` patches of panels ``panel, panel + 1, ...``,

    * expanded: ``out[a, column + c] = bias[panel * W + c] + sum_k ys[row + a, k] phi_c(r_k)``
    * direct:   ``out[a, column + c] = sum_k (ys[row + a, k] - phi_c(r_k))^2``

    with ``panels[p, k, w] = phi_{p W + w}(r_k)``. The accumulators stay in vector
    registers across the loop over offsets (GEMM micro-kernel: per offset, ``n_panels *
    PANEL_VECTORS`` contiguous loads, ``n_queries`` broadcasts and their products), which
    the loop vectorizer does not produce from scalar code.
    """

    @intrinsic
    def panel_kernel(typingctx, panels, ys, row, bias, out, panel, column):
        arrays_ok = (
            isinstance(panels, types.Array) and panels.ndim == 3 and panels.layout == "C"
            and isinstance(ys, types.Array) and ys.ndim == 2 and ys.layout == "C"
            and isinstance(bias, types.Array) and bias.ndim == 1
            and isinstance(out, types.Array) and out.ndim == 2 and out.layout == "C"
            and isinstance(panels.dtype, types.Float)
            and panels.dtype == ys.dtype == bias.dtype == out.dtype
        )
        if not arrays_ok:
            return None
        signature = types.void(panels, ys, types.intp, bias, out, types.intp, types.intp)

        def codegen(context, builder, sig, args):
            panels_ary = context.make_array(sig.args[0])(context, builder, args[0])
            ys_ary = context.make_array(sig.args[1])(context, builder, args[1])
            bias_ary = context.make_array(sig.args[3])(context, builder, args[3])
            out_ary = context.make_array(sig.args[4])(context, builder, args[4])
            row, panel, column = args[2], args[5], args[6]
            vector, lanes, const, load_vector, fmuladd = _vector_codegen(context, builder, sig.args[0].dtype,
                                                                         row.type)
            width = lanes * PANEL_VECTORS
            item_bytes = sig.args[0].dtype.bitwidth // 8
            n_offsets = cgutils.unpack_tuple(builder, panels_ary.shape, 3)[1]
            out_row = cgutils.unpack_tuple(builder, out_ary.shape, 2)[1]
            undefined = ir.Constant(vector, ir.Undefined)
            zero_mask = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)

            slots = {}
            for a in range(n_queries):
                for c in range(n_panels * PANEL_VECTORS):
                    slot = cgutils.alloca_once(builder, vector)
                    if direct:
                        builder.store(ir.Constant(vector, [0.0] * lanes), slot)
                    else:
                        offset = builder.add(builder.mul(panel, const(width)), const(c * lanes))
                        builder.store(load_vector(bias_ary.data, offset), slot)
                    slots[a, c] = slot
            with cgutils.for_range(builder, n_offsets) as loop:
                k = loop.index
                patch_vectors = []
                for c in range(n_panels * PANEL_VECTORS):
                    p = builder.add(panel, const(c // PANEL_VECTORS))
                    offset = builder.add(builder.mul(builder.add(builder.mul(p, n_offsets), k), const(width)),
                                         const((c % PANEL_VECTORS) * lanes))
                    patch_vectors.append(load_vector(panels_ary.data, offset))
                for a in range(n_queries):
                    y_offset = builder.add(builder.mul(builder.add(row, const(a)), n_offsets), k)
                    y_value = builder.load(builder.gep(ys_ary.data, [y_offset]))
                    y_vector = builder.shuffle_vector(
                        builder.insert_element(undefined, y_value, ir.Constant(ir.IntType(32), 0)),
                        undefined, zero_mask)
                    for c in range(n_panels * PANEL_VECTORS):
                        accumulator = builder.load(slots[a, c])
                        if direct:
                            difference = builder.fsub(y_vector, patch_vectors[c])
                            updated = builder.call(fmuladd, [difference, difference, accumulator])
                        else:
                            updated = builder.call(fmuladd, [y_vector, patch_vectors[c], accumulator])
                        builder.store(updated, slots[a, c])
            for a in range(n_queries):
                for c in range(n_panels * PANEL_VECTORS):
                    offset = builder.add(builder.add(builder.mul(const(a), out_row), column), const(c * lanes))
                    pointer = builder.bitcast(builder.gep(out_ary.data, [offset]), vector.as_pointer())
                    builder.store(builder.load(slots[a, c]), pointer, align=item_bytes)
            return context.get_dummy_value()

        return signature, codegen

    return panel_kernel


_panel_logits_4x1 = _make_panel_kernel(4, 1, direct=False)
_panel_logits_1x4 = _make_panel_kernel(1, 4, direct=False)
_panel_logits_1x1 = _make_panel_kernel(1, 1, direct=False)
_panel_sqdist_4x1 = _make_panel_kernel(4, 1, direct=True)
_panel_sqdist_1x4 = _make_panel_kernel(1, 4, direct=True)
_panel_sqdist_1x1 = _make_panel_kernel(1, 1, direct=True)


@njit(fastmath=True)
def _block_logits_four(panels, ys, row, bias, first_panel, n_panels, direct, buffer):
    """Logits (or squared distances if ``direct``) of 4 queries, ``n_panels`` panels."""
    width = panels.shape[2]
    if direct:
        for p in range(n_panels):
            _panel_sqdist_4x1(panels, ys, row, bias, buffer, first_panel + p, p * width)
    else:
        for p in range(n_panels):
            _panel_logits_4x1(panels, ys, row, bias, buffer, first_panel + p, p * width)


@njit(fastmath=True)
def _block_logits_one(panels, ys, row, bias, first_panel, n_panels, direct, buffer):
    """Logits (or squared distances) of one query; four panels at a time."""
    width = panels.shape[2]
    p = 0
    if direct:
        while p + 4 <= n_panels:
            _panel_sqdist_1x4(panels, ys, row, bias, buffer, first_panel + p, p * width)
            p += 4
        while p < n_panels:
            _panel_sqdist_1x1(panels, ys, row, bias, buffer, first_panel + p, p * width)
            p += 1
    else:
        while p + 4 <= n_panels:
            _panel_logits_1x4(panels, ys, row, bias, buffer, first_panel + p, p * width)
            p += 4
        while p < n_panels:
            _panel_logits_1x1(panels, ys, row, bias, buffer, first_panel + p, p * width)
            p += 1


@njit(fastmath=True)
def _direct_logits(buffer_row, nb, bias, j0, minus_half_scale):
    """Squared distances -> log weights ``bias - scale/2 d^2`` (direct form)."""
    b = bias[j0:j0 + nb]
    for j in range(nb):
        buffer_row[j] = b[j] + minus_half_scale * buffer_row[j]


@njit(fastmath=True)
def _check_layout(queries, panels, bias, centre):
    """The micro-kernel reads memory without bounds checks: check the shapes it assumes."""
    if panels.shape[2] != PANEL_VECTORS * 32 // panels.itemsize:
        raise ValueError("panels must be (n_panels, K, panel_width(dtype))")
    if queries.shape[1] != panels.shape[1]:
        raise ValueError("queries and panels must have the same window size K")
    if bias.size != panels.shape[0] * panels.shape[2] or centre.size != bias.size:
        raise ValueError("bias and centre must have one entry per packed patch")


@njit(fastmath=True)
def _scaled_queries(queries, q_start, q_stop, scale, direct):
    """Queries of a tile, times ``scale`` in the expanded form (panel-kernel input)."""
    n_offsets = queries.shape[1]
    ys = np.empty((q_stop - q_start, n_offsets), dtype=queries.dtype)
    factor = queries.dtype.type(1) if direct else scale
    for t in range(q_stop - q_start):
        for k in range(n_offsets):
            ys[t, k] = queries[q_start + t, k] * factor
    return ys


@njit(fastmath=True)
def _tile_logits(panels, ys, row, four, bias, j0, nb, direct, minus_half_scale, buffer):
    """``buffer[a, :nb]`` = log weights of packed patches ``j0 .. j0+nb`` for queries
    ``row + a``, ``a < 4`` if ``four`` else ``a = 0`` (micro-kernel, then the direct
    form's conversion)."""
    width = panels.shape[2]
    first_panel = j0 // width
    n_panels = (nb + width - 1) // width
    if four:
        _block_logits_four(panels, ys, row, bias, first_panel, n_panels, direct, buffer)
        if direct:
            for a in range(4):
                _direct_logits(buffer[a], nb, bias, j0, minus_half_scale)
    else:
        _block_logits_one(panels, ys, row, bias, first_panel, n_panels, direct, buffer)
        if direct:
            _direct_logits(buffer[0], nb, bias, j0, minus_half_scale)


# --------------------------------------------------------------------------------------
# denoiser: tiles of queries against a common patch range
# --------------------------------------------------------------------------------------


@njit(fastmath=True)
def _denoise_tile(queries, q_start, q_stop, panels, centre, bias, j_start, j_stop, scale,
                  direct, block, out):
    """``out[q] = D`` for queries ``q_start .. q_stop`` sharing patches ``j_start .. j_stop``.

    Patch indices are positions in the packed panels (``j_start`` and ``block`` are
    multiples of the panel width). Loop order block -> query keeps a block of panels in
    cache while all the tile's queries use it, four at a time in registers.
    """
    n = q_stop - q_start
    ys = _scaled_queries(queries, q_start, q_stop, scale, direct)
    buffer = np.empty((4, block), dtype=panels.dtype)
    log_max = np.zeros(n)
    sums = np.zeros((n, 2))
    minus_half_scale = panels.dtype.type(-0.5) * scale
    for j0 in range(j_start, j_stop, block):
        nb = min(block, j_stop - j0)
        t = 0
        while t < n:
            rows = 4 if t + 4 <= n else 1
            _tile_logits(panels, ys, t, rows == 4, bias, j0, nb, direct, minus_half_scale, buffer)
            for a in range(rows):
                _accumulate_mean(buffer[a], nb, centre, j0, t + a, log_max, sums)
            t += rows
    for t in range(n):
        out[q_start + t] = sums[t, 1] / sums[t, 0]


@njit(fastmath=True)
def denoise_serial(queries, tile_queries, tile_patches, panels, centre, bias, scale, direct,
                   block, out):
    """Denoised centre value of every query, tile by tile (one thread).

    Args:
        queries: ``(n_queries, K)`` windows of the field.
        tile_queries: ``(n_tiles + 1,)`` query boundaries of the tiles.
        tile_patches: ``(n_tiles, 2)`` packed patch range ``[start, stop)`` of each tile.
        panels: ``(n_panels, K, W)`` packed patches, ``W = panel_width(dtype)``.
        centre, bias: ``(n_panels * W,)`` centre values and log-weight offsets.
        scale: ``1/s^2`` in the patch dtype.
        direct: direct (True) or expanded (False) form of the log weights.
        block: patches per block of the streaming softmax (multiple of ``W``).
        out: ``(n_queries,)`` result, in the patch dtype.
    """
    _check_layout(queries, panels, bias, centre)
    for tile in range(tile_queries.size - 1):
        _denoise_tile(queries, tile_queries[tile], tile_queries[tile + 1], panels, centre, bias,
                      tile_patches[tile, 0], tile_patches[tile, 1], scale, direct, block, out)


@njit(parallel=True, fastmath=True)
def denoise_parallel(queries, tile_queries, tile_patches, panels, centre, bias, scale, direct,
                     block, out):
    """:func:`denoise_serial` with the tiles spread over threads (same result bit for bit)."""
    _check_layout(queries, panels, bias, centre)
    for tile in prange(tile_queries.size - 1):
        _denoise_tile(queries, tile_queries[tile], tile_queries[tile + 1], panels, centre, bias,
                      tile_patches[tile, 0], tile_patches[tile, 1], scale, direct, block, out)


# --------------------------------------------------------------------------------------
# denoiser with exact pruning of negligible blocks
# --------------------------------------------------------------------------------------


@njit(fastmath=True)
def _block_upper_bounds(rotated_query, first, last, geometry, common, half_scale, ball, box, upper):
    """``upper[b]``: bound on the log weights of every patch in block ``first + b``.

    ``geometry`` (rows: ``K`` centre, ``K`` box low, ``K`` box high, radius, log of the
    largest multiplicity; columns: blocks) is in rotated coordinates, where distances
    are unchanged. The distance from ``y`` to any patch of a block is at least
    ``|y - c| - rho`` (ball) and at least the distance from ``y`` to the block's box;
    the larger of the two bounds the log weight ``log m - scale/2 |y - phi|^2``.
    Loops run over blocks innermost (contiguous), so they vectorize.
    """
    n_offsets = rotated_query.size
    n = last - first
    ball[:n] = 0.0
    box[:n] = 0.0
    for k in range(n_offsets):
        yk = rotated_query[k]
        centre_k = geometry[k, first:last]
        low_k = geometry[n_offsets + k, first:last]
        high_k = geometry[2 * n_offsets + k, first:last]
        for b in range(n):
            d = yk - centre_k[b]
            ball[b] += d * d
            outside = max(0.0, max(low_k[b] - yk, yk - high_k[b]))
            box[b] += outside * outside
    radius = geometry[3 * n_offsets, first:last]
    log_mult_max = geometry[3 * n_offsets + 1, first:last]
    for b in range(n):
        gap = max(0.0, math.sqrt(ball[b]) - radius[b])
        upper[b] = log_mult_max[b] + common - half_scale * max(gap * gap, box[b])


@njit(fastmath=True)
def _denoise_query_pruned(queries, q, first, last, block_span, geometry, rotation, panels, centre,
                          bias, scale, direct, margin, work):
    """Denoise one query, skipping blocks whose every log weight is below ``max - margin``.

    The block with the largest bound (:func:`_block_upper_bounds`) is evaluated first,
    so the running maximum is high early; then the blocks whose bound reaches
    ``max - margin``, by decreasing bound, until the bound falls below
    ``max - margin`` (the maximum only rises). Returns ``D`` and the number of blocks
    evaluated.
    """
    ys, buffer, rotated_query, ball, box, upper, order, log_max, sums = work
    n_offsets = panels.shape[1]
    width = panels.shape[2]
    query_sq = 0.0
    for k in range(n_offsets):
        value = float(queries[q, k])
        query_sq += value * value
        ys[0, k] = queries[q, k] if direct else queries[q, k] * scale
    for i in range(n_offsets):
        acc = 0.0
        for k in range(n_offsets):
            acc += rotation[k, i] * float(queries[q, k])
        rotated_query[i] = acc
    half_scale = 0.5 * float(scale)
    # the expanded form's log weights omit -scale/2 |y|^2
    common = 0.0 if direct else half_scale * query_sq
    _block_upper_bounds(rotated_query, first, last, geometry, common, half_scale, ball, box, upper)
    n = last - first
    best = 0
    for b in range(1, n):
        if upper[b] > upper[best]:
            best = b
    log_max[0] = 0.0
    sums[0, 0] = 0.0
    sums[0, 1] = 0.0
    minus_half_scale = panels.dtype.type(-0.5) * scale
    _evaluate_block(panels, ys, bias, centre, block_span, first + best, direct, minus_half_scale,
                    buffer, log_max, sums)
    # the remaining candidates, by decreasing bound: stop at the first one below
    n_candidates = _candidates_by_bound(upper, n, log_max[0] - margin, order)
    n_done = 1
    for i in range(n_candidates):
        b = order[i]
        if b == best:
            continue
        if upper[b] < log_max[0] - margin:
            break
        _evaluate_block(panels, ys, bias, centre, block_span, first + b, direct, minus_half_scale,
                        buffer, log_max, sums)
        n_done += 1
    return sums[0, 1] / sums[0, 0], n_done


@njit(fastmath=True)
def _candidates_by_bound(upper, n, threshold, order):
    """``order[:count]``: the blocks ``b < n`` with ``upper[b] >= threshold``, by
    decreasing ``upper`` (Shell sort, Knuth's gaps). Returns ``count``."""
    count = 0
    for b in range(n):
        if upper[b] >= threshold:
            order[count] = b
            count += 1
    gap = 1
    while gap < count // 3:
        gap = 3 * gap + 1
    while gap > 0:
        for i in range(gap, count):
            item = order[i]
            key = upper[item]
            j = i
            while j >= gap and upper[order[j - gap]] < key:
                order[j] = order[j - gap]
                j -= gap
            order[j] = item
        gap //= 3
    return count


@njit(fastmath=True)
def _evaluate_block(panels, ys, bias, centre, block_span, block, direct, minus_half_scale, buffer,
                    log_max, sums):
    """Add one block of patches to the streaming softmax of a single query."""
    j0 = block_span[block, 0]
    nb = block_span[block, 1] - j0
    _tile_logits(panels, ys, 0, False, bias, j0, nb, direct, minus_half_scale, buffer)
    _accumulate_mean(buffer[0], nb, centre, j0, 0, log_max, sums)


@njit(fastmath=True)
def _denoise_pruned_range(queries, q_start, q_stop, query_group, group_blocks, block_span,
                          geometry, rotation, panels, centre, bias, scale, direct, margin, out,
                          blocks_done):
    largest_block = 1
    largest_group = 1
    for b in range(block_span.shape[0]):
        largest_block = max(largest_block, block_span[b, 1] - block_span[b, 0])
    for g in range(group_blocks.size - 1):
        largest_group = max(largest_group, group_blocks[g + 1] - group_blocks[g])
    width = panels.shape[2]
    n_offsets = panels.shape[1]
    work = (np.empty((1, n_offsets), dtype=panels.dtype),
            np.empty((1, width * ((largest_block + width - 1) // width)), dtype=panels.dtype),
            np.empty(n_offsets), np.empty(largest_group), np.empty(largest_group),
            np.empty(largest_group), np.empty(largest_group, dtype=np.int64), np.zeros(1),
            np.zeros((1, 2)))
    for q in range(q_start, q_stop):
        g = query_group[q]
        value, n_done = _denoise_query_pruned(queries, q, group_blocks[g], group_blocks[g + 1],
                                              block_span, geometry, rotation, panels, centre, bias,
                                              scale, direct, margin, work)
        out[q] = value
        blocks_done[q] = n_done


@njit(fastmath=True)
def denoise_pruned_serial(queries, chunk_queries, query_group, group_blocks, block_span, geometry,
                          rotation, panels, centre, bias, scale, direct, margin, out, blocks_done):
    """Pruned denoiser, one thread. ``blocks_done[q]`` counts the blocks evaluated.

    Args (beyond :func:`denoise_serial`'s):
        chunk_queries: ``(n_chunks + 1,)`` query boundaries (the unit of parallel work).
        query_group: ``(n_queries,)`` patch group of each query.
        group_blocks: blocks ``group_blocks[g] .. group_blocks[g+1]`` belong to group ``g``.
        block_span: ``(n_blocks, 2)`` packed patch range of each block (starts are
            multiples of the panel width).
        geometry: ``(3K + 2, n_blocks)`` bounding balls and boxes, rotated coordinates
            (see :func:`_block_upper_bounds`).
        rotation: ``(K, K)`` orthogonal; rotated coordinates are ``rotation.T @ y``.
        margin: prune blocks whose bound is below ``max - margin``.
    """
    _check_layout(queries, panels, bias, centre)
    for c in range(chunk_queries.size - 1):
        _denoise_pruned_range(queries, chunk_queries[c], chunk_queries[c + 1], query_group,
                              group_blocks, block_span, geometry, rotation, panels, centre, bias,
                              scale, direct, margin, out, blocks_done)


@njit(parallel=True, fastmath=True)
def denoise_pruned_parallel(queries, chunk_queries, query_group, group_blocks, block_span,
                            geometry, rotation, panels, centre, bias, scale, direct, margin, out,
                            blocks_done):
    """:func:`denoise_pruned_serial` with the chunks spread over threads."""
    _check_layout(queries, panels, bias, centre)
    for c in prange(chunk_queries.size - 1):
        _denoise_pruned_range(queries, chunk_queries[c], chunk_queries[c + 1], query_group,
                              group_blocks, block_span, geometry, rotation, panels, centre, bias,
                              scale, direct, margin, out, blocks_done)


# --------------------------------------------------------------------------------------
# posterior moments (for the Jacobian): one pass, centred on the heaviest patch
# --------------------------------------------------------------------------------------
#
# Per query, relative to the running maximum ``M`` (``w_j = exp(l_j - M)``) and to a
# reference centre value ``c*``, the stream keeps
#
#     W = sum w,  S = sum w (phi(0) - c*),  R_r = sum w phi(r),  Q_r = sum w (phi(0) - c*) phi(r),
#
# and at the end ``mean_r = R_r / W``, ``Cov_r = Q_r / W - (S / W) (R_r / W)``: an exact
# identity for any ``c*``. ``c*`` is the centre of the patch holding the running
# maximum (weight exactly 1), so that patch adds nothing to ``S`` or ``Q``. When the
# posterior is concentrated on it (low noise) the covariance is small, but so are
# ``S`` and ``Q``: both subtracted terms are at most ``E_w|phi(0) - c*| max|phi|``,
# so the cancellation costs about a factor ``max|phi| / |phi(r) - mean(r)|`` (as the
# rounding of ``phi(r) - mean(r)`` itself would), never one that grows as the weights
# concentrate. (Uncentred sums would lose ``max|phi|^2 / Cov``, and a two-pass sum
# centred on the rounded mean loses ``u |mean| / Cov`` when the heaviest patches share
# ``phi(0)``: both unbounded at low noise.)
# When a block raises the maximum, the sums are rescaled by ``exp(M - M')`` and moved
# to the new reference exactly: ``S' = S + (c* - c*') W``, ``Q'_r = Q_r + (c* - c*') R_r``.


def _make_weighted_sum_kernel(n_rows: int, n_offsets: int):
    """Intrinsic: weighted sums of ``n_offsets`` rows of the transposed patch set.

    ``kernel(weights, row, patches_t, j0, n_vectors, k, out)`` stores, for ``a <
    n_rows`` and ``b < n_offsets``,

        out[row + a, k + b] = sum_{j < n_vectors L} weights[row + a, j] patches_t[k + b, j0 + j]

    with ``L`` the lanes of a 256-bit vector (4 float64, 8 float32). The ``n_rows x
    n_offsets`` accumulators are vectors along the patches, held in registers for the
    whole block (per vector of patches: ``n_offsets + n_rows`` loads, ``n_rows *
    n_offsets`` multiply-adds) and summed across lanes once, in lane order; written as
    LLVM vector code to fix that register blocking (for scalar loops the vectorizer
    picks its own).
    """

    @intrinsic
    def weighted_sums(typingctx, weights, row, patches_t, j0, n_vectors, k, out):
        arrays_ok = all(isinstance(array, types.Array) and array.ndim == 2 and array.layout == "C"
                        for array in (weights, patches_t, out))
        if not (arrays_ok and isinstance(weights.dtype, types.Float)
                and weights.dtype == patches_t.dtype == out.dtype):
            return None
        signature = types.void(weights, types.intp, patches_t, types.intp, types.intp, types.intp, out)

        def codegen(context, builder, sig, args):
            weights_ary = context.make_array(sig.args[0])(context, builder, args[0])
            patches_ary = context.make_array(sig.args[2])(context, builder, args[2])
            out_ary = context.make_array(sig.args[6])(context, builder, args[6])
            row, j0, count, k = args[1], args[3], args[4], args[5]
            vector, lanes, const, load_vector, fmuladd = _vector_codegen(context, builder, sig.args[0].dtype,
                                                                         row.type)
            weights_row = cgutils.unpack_tuple(builder, weights_ary.shape, 2)[1]
            patches_row = cgutils.unpack_tuple(builder, patches_ary.shape, 2)[1]
            out_row = cgutils.unpack_tuple(builder, out_ary.shape, 2)[1]
            slots = {}
            for a in range(n_rows):
                for b in range(n_offsets):
                    slots[a, b] = cgutils.alloca_once(builder, vector)
                    builder.store(ir.Constant(vector, [0.0] * lanes), slots[a, b])
            with cgutils.for_range(builder, count) as loop:
                j = builder.mul(loop.index, const(lanes))
                patch_vectors = []
                for b in range(n_offsets):
                    start = builder.add(builder.mul(builder.add(k, const(b)), patches_row), j0)
                    patch_vectors.append(load_vector(patches_ary.data, builder.add(start, j)))
                for a in range(n_rows):
                    offset = builder.add(builder.mul(builder.add(row, const(a)), weights_row), j)
                    weight_vector = load_vector(weights_ary.data, offset)
                    for b in range(n_offsets):
                        updated = builder.call(fmuladd, [weight_vector, patch_vectors[b], builder.load(slots[a, b])])
                        builder.store(updated, slots[a, b])
            for a in range(n_rows):
                for b in range(n_offsets):
                    accumulator = builder.load(slots[a, b])
                    lane_values = [builder.extract_element(accumulator, ir.Constant(ir.IntType(32), lane))
                                   for lane in range(lanes)]
                    total = lane_values[0]
                    for value in lane_values[1:]:
                        total = builder.fadd(total, value)
                    offset = builder.add(builder.mul(builder.add(row, const(a)), out_row), builder.add(k, const(b)))
                    builder.store(total, builder.gep(out_ary.data, [offset]))
            return context.get_dummy_value()

        return signature, codegen

    return weighted_sums


# 4 rows x 3 offsets: 12 accumulators (of 16 vector registers), enough independent
# chains to hide the multiply-add latency, 7 loads per 12 multiply-adds; the leftover
# offsets take all 8 rows at once (8 chains, not 4)
_weighted_sums_4x3 = _make_weighted_sum_kernel(4, 3)
_weighted_sums_8x1 = _make_weighted_sum_kernel(8, 1)
_weighted_sums_1x3 = _make_weighted_sum_kernel(1, 3)
_weighted_sums_1x1 = _make_weighted_sum_kernel(1, 1)


@njit(fastmath=True)
def _weighted_row_sums(weights, four, patches_t, j0, n_vectors, out):
    """``out[a, k] = sum_j weights[a, j] patches_t[k, j0 + j]`` for every offset ``k``,
    over the first ``n_vectors`` SIMD vectors of patches, for the rows ``a`` of four
    queries (``0 .. 7``) if ``four``, else of one (``0`` and ``4``)."""
    n_offsets = patches_t.shape[0]
    k = 0
    if four:
        while k + 3 <= n_offsets:
            _weighted_sums_4x3(weights, 0, patches_t, j0, n_vectors, k, out)
            _weighted_sums_4x3(weights, 4, patches_t, j0, n_vectors, k, out)
            k += 3
        while k < n_offsets:
            _weighted_sums_8x1(weights, 0, patches_t, j0, n_vectors, k, out)
            k += 1
    else:
        while k + 3 <= n_offsets:
            _weighted_sums_1x3(weights, 0, patches_t, j0, n_vectors, k, out)
            _weighted_sums_1x3(weights, 4, patches_t, j0, n_vectors, k, out)
            k += 3
        while k < n_offsets:
            _weighted_sums_1x1(weights, 0, patches_t, j0, n_vectors, k, out)
            _weighted_sums_1x1(weights, 4, patches_t, j0, n_vectors, k, out)
            k += 1


@njit(fastmath=True)
def _recentre_moments(state, n_offsets, factor, shift):
    """Rescale ``state = (W, S, R_0.., Q_0..)`` by ``factor`` and move its reference
    centre value from ``c*`` to ``c*'``, ``shift = c* - c*'`` (exact algebra:
    ``S' = S + shift W``, ``Q'_r = Q_r + shift R_r``)."""
    for i in range(2 + 2 * n_offsets):
        state[i] *= factor
    state[1] += shift * state[0]
    for k in range(n_offsets):
        state[2 + n_offsets + k] += shift * state[2 + k]


@njit(fastmath=True)
def _moments_raise_max(logits, nb, centre, j0, slot, log_max, reference, sums):
    """Fold a block's maximum into query ``slot``'s running maximum and reference.

    ``sums[slot, 0] == 0`` marks "no block seen yet" (after one, ``W >= 1``). A block
    holding a new maximum makes its first patch attaining it the reference. Returns
    False when every weight of the block is exactly 0 (its largest log weight is below
    the maximum by more than the floor of :func:`exp_nonpositive`): such a block adds
    nothing, and is skipped.
    """
    block_max = _leading_max(logits, nb)
    first = sums[slot, 0] == 0.0
    if first or block_max > log_max[slot]:
        j = 0
        while j < nb - 1 and logits[j] != block_max:
            j += 1
        new_reference = float(centre[j0 + j])
        if not first:
            n_offsets = (sums.shape[1] - 2) // 2
            _recentre_moments(sums[slot], n_offsets, math.exp(log_max[slot] - block_max),
                              reference[slot] - new_reference)
        reference[slot] = new_reference
        log_max[slot] = block_max
        return True
    floor = _EXP64_FLOOR if logits.itemsize == 8 else _EXP32_FLOOR
    # the same difference as the weights' exponent; l <= block_max, rounding is monotone
    return block_max - logits.dtype.type(log_max[slot]) >= floor


@njit(fastmath=True)
def _moments_weights(weights, shifted, nb, padded, centre, log_max, reference, state):
    """Logits -> ``w = exp(l - M)`` in place, ``shifted = w (phi(0) - c*)``; both zero
    from ``nb`` to ``padded`` (whole vectors for the weighted sums). Adds ``sum w`` and
    ``sum shifted`` to ``state[0]``, ``state[1]``."""
    zero = weights.dtype.type(0)
    total = zero
    total_shifted = zero
    for j in range(nb):
        w = exp_nonpositive(weights[j] - log_max)
        u = w * (centre[j] - reference)
        weights[j] = w
        shifted[j] = u
        total += w
        total_shifted += u
    for j in range(nb, padded):
        weights[j] = zero
        shifted[j] = zero
    state[0] += total
    state[1] += total_shifted


@njit(fastmath=True)
def _moments_tile(queries, q_start, q_stop, panels, patches_t, centre, bias, j_start, j_stop,
                  scale, direct, block, patch_mean, centre_cov):
    """Posterior mean patch and ``Cov_w[phi(0), phi(r)]`` of queries ``q_start .. q_stop``.

    One pass over the patches (section comment above): a block's logits are computed
    once, four queries at a time; their weights ``w`` and ``w (phi(0) - c*)`` (rows
    ``a`` and ``4 + a`` of one buffer) are summed against the block's patches by the
    register-blocked weighted-sum kernel. Sums over a block are in the patch dtype,
    across blocks in float64. ``patches_t`` is the packed patch set transposed,
    ``(K, n_packed)``.
    """
    n_offsets = panels.shape[1]
    n = q_stop - q_start
    dtype = panels.dtype
    lanes = 32 // panels.itemsize
    ys = _scaled_queries(queries, q_start, q_stop, scale, direct)
    buffer = np.empty((8, block), dtype=dtype)
    block_sums = np.empty((8, n_offsets), dtype=dtype)
    log_max = np.zeros(n)
    reference = np.zeros(n)
    sums = np.zeros((n, 2 + 2 * n_offsets))  # (W, S, R_r, Q_r) of each query
    minus_half_scale = dtype.type(-0.5) * scale
    zero = dtype.type(0)
    for j0 in range(j_start, j_stop, block):
        nb = min(block, j_stop - j0)
        n_vectors = (nb + lanes - 1) // lanes  # past nb: packing gaps, given weight 0
        padded = n_vectors * lanes
        c = centre[j0:j0 + nb]
        t = 0
        while t < n:
            rows = 4 if t + 4 <= n else 1
            _tile_logits(panels, ys, t, rows == 4, bias, j0, nb, direct, minus_half_scale, buffer)
            live = 0
            for a in range(rows):
                if _moments_raise_max(buffer[a], nb, centre, j0, t + a, log_max, reference, sums):
                    _moments_weights(buffer[a], buffer[4 + a], nb, padded, c, dtype.type(log_max[t + a]),
                                     dtype.type(reference[t + a]), sums[t + a])
                    live += 1
                else:
                    buffer[a, :padded] = zero
                    buffer[4 + a, :padded] = zero
            if live > 0:
                _weighted_row_sums(buffer, rows == 4, patches_t, j0, n_vectors, block_sums)
                for a in range(rows):
                    for k in range(n_offsets):
                        sums[t + a, 2 + k] += block_sums[a, k]
                        sums[t + a, 2 + n_offsets + k] += block_sums[4 + a, k]
            t += rows
    for t in range(n):
        total = sums[t, 0]
        centre_offset = sums[t, 1] / total  # E_w[phi(0)] - c*
        for k in range(n_offsets):
            mean = sums[t, 2 + k] / total
            patch_mean[q_start + t, k] = mean
            centre_cov[q_start + t, k] = sums[t, 2 + n_offsets + k] / total - centre_offset * mean


@njit(fastmath=True)
def _check_moments_layout(queries, panels, patches_t, bias, centre):
    """The weighted-sum kernel reads ``patches_t`` without bounds checks, as well."""
    _check_layout(queries, panels, bias, centre)
    if patches_t.shape[0] != panels.shape[1] or patches_t.shape[1] != bias.size:
        raise ValueError("patches_t must be (K, n_panels * panel_width(dtype))")


@njit(fastmath=True)
def moments_serial(queries, tile_queries, tile_patches, panels, patches_t, centre, bias, scale,
                   direct, block, patch_mean, centre_cov):
    """Posterior moments of every query (see :func:`_moments_tile`), one thread."""
    _check_moments_layout(queries, panels, patches_t, bias, centre)
    for tile in range(tile_queries.size - 1):
        _moments_tile(queries, tile_queries[tile], tile_queries[tile + 1], panels, patches_t, centre,
                      bias, tile_patches[tile, 0], tile_patches[tile, 1], scale, direct, block,
                      patch_mean, centre_cov)


@njit(parallel=True, fastmath=True)
def moments_parallel(queries, tile_queries, tile_patches, panels, patches_t, centre, bias, scale,
                     direct, block, patch_mean, centre_cov):
    """:func:`moments_serial` with the tiles spread over threads."""
    _check_moments_layout(queries, panels, patches_t, bias, centre)
    for tile in prange(tile_queries.size - 1):
        _moments_tile(queries, tile_queries[tile], tile_queries[tile + 1], panels, patches_t, centre,
                      bias, tile_patches[tile, 0], tile_patches[tile, 1], scale, direct, block,
                      patch_mean, centre_cov)


# --------------------------------------------------------------------------------------
# normalized posterior weights (global mode: posterior over training images)
# --------------------------------------------------------------------------------------


@njit(fastmath=True)
def _weights_tile(queries, q_start, q_stop, panels, bias, n_patches, scale, direct, block, weights):
    """``weights[q, :n_patches]`` = softmax weights of queries ``q_start .. q_stop``."""
    n = q_stop - q_start
    dtype = panels.dtype
    ys = _scaled_queries(queries, q_start, q_stop, scale, direct)
    buffer = np.empty((4, block), dtype=dtype)
    minus_half_scale = dtype.type(-0.5) * scale
    for j0 in range(0, n_patches, block):
        nb = min(block, n_patches - j0)
        t = 0
        while t < n:
            rows = 4 if t + 4 <= n else 1
            _tile_logits(panels, ys, t, rows == 4, bias, j0, nb, direct, minus_half_scale, buffer)
            for a in range(rows):
                weights[q_start + t + a, j0:j0 + nb] = buffer[a, :nb]
            t += rows
    for t in range(n):
        row = weights[q_start + t]
        largest = _leading_max(row, n_patches)
        total = 0.0
        for j in range(n_patches):
            w = exp_nonpositive(row[j] - largest)
            row[j] = w
            total += w
        inverse = dtype.type(1.0 / total)
        for j in range(n_patches):
            row[j] *= inverse


@njit(fastmath=True)
def posterior_weights_serial(queries, tile_queries, panels, bias, n_patches, scale, direct, block,
                             weights):
    """``weights[q, a]`` = normalized softmax weight of (packed) patch ``a`` for query ``q``.

    The patches are one group starting at packed position 0.
    """
    _check_layout(queries, panels, bias, bias)
    for tile in range(tile_queries.size - 1):
        _weights_tile(queries, tile_queries[tile], tile_queries[tile + 1], panels, bias, n_patches,
                      scale, direct, block, weights)


@njit(parallel=True, fastmath=True)
def posterior_weights_parallel(queries, tile_queries, panels, bias, n_patches, scale, direct, block,
                               weights):
    """:func:`posterior_weights_serial` with the tiles spread over threads."""
    _check_layout(queries, panels, bias, bias)
    for tile in prange(tile_queries.size - 1):
        _weights_tile(queries, tile_queries[tile], tile_queries[tile + 1], panels, bias, n_patches,
                      scale, direct, block, weights)


# --------------------------------------------------------------------------------------
# machine probes (what this CPU attains; used by the benchmark)
# --------------------------------------------------------------------------------------


@njit(fastmath=True)
def _fma_chains(lanes, multiplier, reps):
    """Eight independent multiply-add chains per element, 8 deep, ``reps`` times.

    Each element's chains start from distinct loaded values, so no algebra can merge
    them; the stores make every repetition depend on the previous one. With
    ``multiplier = 0.25`` and values in ``(0, 1)`` the map ``x -> 0.25 p(x)`` contracts
    to ~0.07: no overflow and no (slow) subnormal numbers, however many repetitions.
    """
    n = lanes.shape[1]
    for _ in range(reps):
        for j in range(n):
            p0 = lanes[0, j]
            p1 = lanes[1, j]
            p2 = lanes[2, j]
            p3 = lanes[3, j]
            p4 = lanes[4, j]
            p5 = lanes[5, j]
            p6 = lanes[6, j]
            p7 = lanes[7, j]
            v0 = p0
            v1 = p1
            v2 = p2
            v3 = p3
            v4 = p4
            v5 = p5
            v6 = p6
            v7 = p7
            for _d in range(8):
                p0 = p0 * v0 + multiplier
                p1 = p1 * v1 + multiplier
                p2 = p2 * v2 + multiplier
                p3 = p3 * v3 + multiplier
                p4 = p4 * v4 + multiplier
                p5 = p5 * v5 + multiplier
                p6 = p6 * v6 + multiplier
                p7 = p7 * v7 + multiplier
            lanes[0, j] = p0 * multiplier
            lanes[1, j] = p1 * multiplier
            lanes[2, j] = p2 * multiplier
            lanes[3, j] = p3 * multiplier
            lanes[4, j] = p4 * multiplier
            lanes[5, j] = p5 * multiplier
            lanes[6, j] = p6 * multiplier
            lanes[7, j] = p7 * multiplier


@njit(parallel=True, fastmath=True)
def fma_probe(lanes, multiplier, reps):
    """Run :func:`_fma_chains` on ``lanes[w]`` for every worker ``w`` in parallel.

    ``lanes`` is ``(n_workers, 8, n)``; the multiply-adds done are
    ``n_workers * 64 * n * reps``.
    """
    for w in prange(lanes.shape[0]):
        _fma_chains(lanes[w], multiplier, reps)


@njit(fastmath=True)
def _exp_sums(arguments, reps):
    total = arguments.dtype.type(0)
    for _ in range(reps):
        for j in range(arguments.size):
            total += exp_nonpositive(arguments[j])
    return total


@njit(parallel=True, fastmath=True)
def exp_probe(arguments, reps, totals):
    """``totals[w] = reps * sum(exp(arguments[w]))`` for every worker ``w`` in parallel.

    The exponentials evaluated are ``arguments.size * reps``.
    """
    for w in prange(arguments.shape[0]):
        totals[w] = _exp_sums(arguments[w], reps)

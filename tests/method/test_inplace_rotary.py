"""Rotary kernels that write the rotated q into q's own storage leave the memories' gradients exact.

liger-kernel's rope (LLaMA-Factory's ``enable_liger_kernel: true``) transposes q back to (B,T,H,D), the layout of
the q_proj (or Qwen3 q_norm) output, and rotates it there in place inside an autograd Function, so autograd's
version counter never moves. A feature map that keeps its input for backward would then read the rotated q.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from .testing_common import TEST_CASES, adapter_params, build_adapted


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """transformers' rotation of (B,H,T,D) by (B,T,D) angles: x cos + rotate_half(x) sin."""
    half = x.shape[-1] // 2
    rotated_half = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos.unsqueeze(1) + rotated_half * sin.unsqueeze(1)


class InPlaceRotary(torch.autograd.Function):
    """Rotates q and k in their own storage, as Liger's LigerRopeFunction does, and returns them.

    Written through ``.data``: like a Triton kernel, the write does not bump the tensors' version counters. The
    backward is autograd's own through ``out_of_place_rotary`` (linear, so taken at zero), rounding included.
    """

    @staticmethod
    def forward(ctx, q, k, cos, sin):
        ctx.save_for_backward(cos, sin)
        ctx.zeros = [torch.zeros_like(x) for x in (q, k)]
        for x in (q, k):
            x.data.copy_(_rotate(x, cos, sin))
        return q, k

    @staticmethod
    def backward(ctx, grad_q, grad_k):
        cos, sin = ctx.saved_tensors
        with torch.enable_grad():
            q, k = (zero.requires_grad_() for zero in ctx.zeros)
            grads = torch.autograd.grad(out_of_place_rotary(q, k, cos, sin), (q, k), (grad_q, grad_k))
        return *grads, None, None


def in_place_rotary(q, k, cos, sin, unsqueeze_dim=1):
    return InPlaceRotary.apply(q, k, cos, sin)


def out_of_place_rotary(q, k, cos, sin, unsqueeze_dim=1):
    """The same values as ``in_place_rotary`` (rounded to q's dtype as its write is), in fresh tensors."""
    return _rotate(q, cos, sin).to(q.dtype), _rotate(k, cos, sin).to(k.dtype)


def _memory_gradients(model_factory, architecture, config_kwargs, rotary, input_ids, monkeypatch, autocast):
    base = model_factory(architecture)
    monkeypatch.setattr(importlib.import_module(type(base).__module__), "apply_rotary_pos_emb", rotary)
    model, _, _ = build_adapted(base, config_kwargs)
    with torch.autocast(input_ids.device.type, dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids, labels=input_ids).loss
    loss.backward()
    return loss.detach(), {key: param.grad for key, param in adapter_params(model).items()}


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("architecture, config_kwargs", TEST_CASES)
def test_in_place_rotary_keeps_gradients(tiny_model, sample_ids, monkeypatch, architecture, config_kwargs, autocast):
    args = (tiny_model, architecture, config_kwargs)
    expected_loss, expected = _memory_gradients(*args, out_of_place_rotary, sample_ids, monkeypatch, autocast)
    loss, grads = _memory_gradients(*args, in_place_rotary, sample_ids, monkeypatch, autocast)
    torch.testing.assert_close(loss, expected_loss, atol=0, rtol=0)  # the stand-in rotates as the model does
    assert sorted(grads) == sorted(expected)
    for key, grad in expected.items():
        assert torch.count_nonzero(grad) > 0, key
        torch.testing.assert_close(grads[key], grad, atol=1e-6, rtol=1e-5, msg=lambda m, key=key: f"{key}: {m}")


class TritonRopeOnCpu:
    """liger-kernel's ``_triton_rope`` kernel (ops/rope.py) written in torch, launched as ``kernel[grid](...)``.

    Like the kernel it rotates the rotary part of q and k, laid out (B,T,H,D), in their own storage (through
    ``.data``: a Triton store leaves autograd's version counters alone); the backward pass rotates by -sin.
    """

    def __getitem__(self, grid):
        return self.run

    @staticmethod
    def run(q, q_row_stride, k, k_row_stride, cos, cos_row_stride, sin, sin_row_stride, *sizes, BLOCK_SIZE,
            BACKWARD_PASS=False):  # fmt: skip
        half = sizes[-1] // 2  # sizes: sl, bs, cos_bs, n_qh, n_kh, hd, pad_n_qh, pad_n_kh, pad_hd, pad_rd, rd
        rd = 2 * half
        cos_row, sin_row = cos[..., None, :half], sin[..., None, :half] * (-1 if BACKWARD_PASS else 1)
        for x in (q, k):
            x1, x2 = x[..., :half].to(cos.dtype, copy=True), x[..., half:rd].to(cos.dtype, copy=True)
            x.data[..., :half] = (x1 * cos_row - x2 * sin_row).to(x.dtype)
            x.data[..., half:rd] = (x2 * cos_row + x1 * sin_row).to(x.dtype)


@pytest.mark.parametrize("architecture", ["qwen2", "qwen3"])
@pytest.mark.parametrize("feature_map", ["gelu", "mlp"])
def test_liger_rope_keeps_gradients(tiny_model, sample_ids, monkeypatch, architecture, feature_map):
    """liger-kernel's own rope (``enable_liger_kernel: true``): its autograd Function and layout code, with its Triton
    kernel on a CUDA GPU, or that kernel written in torch elsewhere (Triton has no CPU driver)."""
    liger_rope = pytest.importorskip("liger_kernel.transformers.rope", reason="liger-kernel is not installed")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        monkeypatch.setattr(importlib.import_module("liger_kernel.ops.rope"), "_triton_rope", TritonRopeOnCpu())

    def on_device(architecture):
        return tiny_model(architecture).to(device)

    args = (on_device, architecture, dict(feature_map=feature_map))
    ids = sample_ids.to(device)
    _, expected = _memory_gradients(*args, out_of_place_rotary, ids, monkeypatch, autocast=False)
    _, grads = _memory_gradients(*args, liger_rope.liger_rotary_pos_emb, ids, monkeypatch, autocast=False)
    for key, grad in expected.items():
        assert torch.count_nonzero(grad) > 0, key
        torch.testing.assert_close(grads[key], grad, atol=1e-5, rtol=1e-4, msg=lambda m, key=key: f"{key}: {m}")

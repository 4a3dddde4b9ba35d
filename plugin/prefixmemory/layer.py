"""The PrefixMemory tuner layers: the memory M, the q-side layer that applies it, the o_proj-side adder.

For query head h at token i (eq. 7):  ``o_i[h] = softmax_attention(q_i[h], K[h], V[h]) + phi(q_i[h]) @ M[h]``,
plus a per-head bias b[h] when ``memory_bias`` is on (the parameter count of the paper's Table 8).

q is read where the model already computes it (the module the architecture table names: q_proj, a q norm, or
a fused qkv projection), before rotary embedding, and is never recomputed. The q-side layer owns M and computes
the memory term in its own forward, so DeepSpeed ZeRO-3 gathers M there; it hands the term through a slot to the
wrapper around o_proj, which adds it to the per-head attention output (the o_proj input). Both wrappers are
permanent: no hooks are registered per call, except for a mixed-adapter call (``adapter_names``), whose names
reach the q-side layer through a pre-hook that lives for that call, as in PEFT's LoRA.
"""

from __future__ import annotations

import copy
import threading
import warnings

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from .architectures import FUSED_QKV, HEADS, TOKENS
from .feature_maps import build_feature_map
from .loading import AdapterWeights

NO_MERGE_MESSAGE = (
    "PrefixMemory cannot be merged into the base weights: phi is non-linear in q. Keep the adapter and load it "
    "with PeftModel.from_pretrained, or export base + adapter together."
)


class MemorySlot(threading.local):
    """Carries one attention call's memory term from the q-side layer to the o_proj wrapper.

    Thread-local so that nn.DataParallel replicas (threads sharing modules) never read each other's term.
    """

    term: torch.Tensor | None = None

    def take(self) -> torch.Tensor | None:
        term, self.term = self.term, None
        return term

    def __deepcopy__(self, memo):
        return MemorySlot()

    def __reduce__(self):
        return MemorySlot, ()


class Memory(AdapterWeights):
    """M of one adapter, shape (heads, feature_dim, value_dim), and its optional bias (heads, 1, value_dim).

    value_dim is the per-head size of the attention output, head_dim except in multi-head latent attention.

    Both are zero at init, so the base model is unchanged. A leaf module whose own forward reads ``weight``:
    ZeRO-3 gathers parameters only inside their owner's forward, and PEFT's FSDP auto-wrap policy isolates leaf
    modules with a trainable ``weight``.
    """

    def __init__(self, num_heads: int, feature_dim: int, value_dim: int, bias: bool, device=None):
        super().__init__()
        # fp32 whatever torch's default dtype: a bf16 M rounds the term (see _move_adapter_to_device_of_base_layer).
        self.weight = nn.Parameter(torch.zeros(num_heads, feature_dim, value_dim, device=device, dtype=torch.float32))
        if bias:
            self.bias = nn.Parameter(torch.zeros(num_heads, 1, value_dim, device=device, dtype=torch.float32))
        else:
            self.register_parameter("bias", None)

    def forward(self, q: torch.Tensor, phi: nn.Module) -> torch.Tensor:
        """phi(q) @ M (+ bias) for q heads first: (H,N,D) -> (H,N,Dv).

        phi runs here, inside the memory's own forward, so M and its bias are read once per call: at decode each
        nn.Module attribute read costs about as much as the term's arithmetic.
        """
        weight, bias = self.weight, self.bias
        features = phi(_phi_input(q, weight.dtype, phi))  # (H,N,D) -> (H,N,F)
        if bias is None:
            return torch.bmm(features, weight)  # (H,N,F) @ (H,F,Dv) -> (H,N,Dv)
        return torch.baddbmm(bias, features, weight)  # (H,1,Dv) + (H,N,F) @ (H,F,Dv) -> (H,N,Dv)


def _phi_input(q: torch.Tensor, dtype: torch.dtype, phi: nn.Module) -> torch.Tensor:
    """q in the memory's dtype, and never q's own storage where phi's backward would read it.

    A rotary kernel may rotate q in place without telling autograd (liger-kernel's rope writes into the q_proj
    output), so a saved view of q would hand backward the rotated q: gelu and mlp keep their input, and get a
    private copy while autograd records. Under autocast the matmul picks its own dtype; otherwise phi runs in
    the memory's (fp32) precision, a new tensor already. Checked in Python first: at decode, every dispatched
    no-op costs as much as the term's arithmetic.
    """
    if q.dtype != dtype and not torch.is_autocast_enabled(q.device.type):
        return q.to(dtype)
    if torch.is_grad_enabled() and phi.keeps_input(q):
        return q.clone()
    return q


class PrefixMemoryLayer(nn.Module, BaseTunerLayer):
    """Wraps the module that produces q; computes ``sum over active adapters of phi(q) @ M`` per head.

    ``query_layout`` (see architectures.py) says how the wrapped module's output holds q; ``value_dim`` is the
    per-head size of the attention output the term is added to.
    """

    # prefixmemory_kernel holds every adapter's phi: the mlp kernel's weights are saved, element-wise maps have none.
    adapter_layer_names = ("prefixmemory_memory", "prefixmemory_kernel")

    def __init__(
        self,
        base_layer: nn.Module,
        slot: MemorySlot,
        num_heads: int,
        head_dim: int,
        key: str,
        value_dim: int | None = None,
        query_layout: str = TOKENS,
    ):
        super().__init__()
        self.base_layer = base_layer
        self.key = key  # the layer's name in the model, for messages
        self.slot = slot
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.value_dim = value_dim or head_dim
        self.query_layout = query_layout
        self.prefixmemory_memory = nn.ModuleDict()
        self.prefixmemory_kernel = nn.ModuleDict()
        # Frozen copies of the adapters a preference-optimisation run starts from (see reference.py). Their names
        # lack the PEFT prefix on purpose: they are never trained, saved or toggled as adapters.
        self.reference_memory = nn.ModuleDict()
        self.reference_kernel = nn.ModuleDict()
        self.use_reference = False

    def update_layer(self, adapter_name: str, feature_map: str, feature_dim: int | None, memory_bias: bool) -> None:
        device = next(self.base_layer.parameters()).device
        phi = build_feature_map(feature_map, self.num_heads, self.head_dim, feature_dim, device)
        self.prefixmemory_kernel[adapter_name] = phi
        memory = Memory(self.num_heads, phi.feature_dim, self.value_dim, memory_bias, device)
        self.prefixmemory_memory[adapter_name] = memory
        memory.key = f"{self.key}.prefixmemory_memory.{adapter_name}"
        phi.key = f"{self.key}.prefixmemory_kernel.{adapter_name}"
        self.set_adapter(self.active_adapters)

    def _move_adapter_to_device_of_base_layer(self, adapter_name: str, device: torch.device | None = None) -> None:
        """Move to the base layer's device and keep fp32; PEFT's version also casts to the base layer's dtype.

        PEFT calls it after a ``low_cpu_mem_usage`` load, where bf16 memories would move the logits by ~4e-3.
        """
        device = device or next(self.base_layer.parameters()).device
        for adapters in (self.prefixmemory_memory, self.prefixmemory_kernel):
            if adapter_name in adapters and not any(p.is_meta for p in adapters[adapter_name].parameters()):
                adapters[adapter_name].to(device=device, dtype=torch.float32)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise ValueError(NO_MERGE_MESSAGE)

    def unmerge(self) -> None:
        warnings.warn("Already unmerged. Nothing to do.", stacklevel=2)  # nothing is ever merged

    def forward(self, x: torch.Tensor, *args, adapter_names: list[str] | None = None, **kwargs) -> torch.Tensor:
        output = self._modules["base_layer"](x, *args, **kwargs)  # not self.base_layer: see _memory_source
        if self.disable_adapters:
            self.slot.term = None
        elif adapter_names is None:
            self.slot.term = self.memory_term(self._query(output))
        else:
            self.slot.term = self.mixed_batch_term(self._query(output), adapter_names)
        return output

    def _query(self, output: torch.Tensor) -> torch.Tensor:
        """q from the wrapped module's output, tokens before heads: (B,T,H*D) or (B,T,H,D), a view."""
        if self.query_layout == HEADS:
            return output.transpose(-3, -2)  # (B,H,T,D) -> (B,T,H,D)
        if self.query_layout == FUSED_QKV:
            return output[..., : self.num_heads * self.head_dim]  # (B,T,(H+2K)*D) -> (B,T,H*D)
        return output

    def memory_term(self, q: torch.Tensor, adapters: tuple[str, ...] | None = None) -> torch.Tensor | None:
        """phi(q) @ M (+ bias) summed over ``adapters`` (default: the active ones), per token and head: (N, H, Dv).

        Computed heads first, one batched matmul per adapter, and returned as a transposed view of that result:
        the o_proj wrapper adds it to its input in one strided add, with no transpose copy forward or backward.
        None when none of the adapters has a memory here (``layers`` left this layer out for that adapter).
        """
        memories, kernels = self._memory_source()
        heads_first = q.reshape(-1, self.num_heads, self.head_dim).transpose(0, 1)  # (N,H,D) -> (H,N,D)
        term = None
        for name in self.active_adapters if adapters is None else adapters:
            memory = memories.get(name)
            if memory is None:
                continue
            adapter_term = memory(heads_first, kernels[name])  # (H,N,D) -> (H,N,Dv)
            term = adapter_term if term is None else term + adapter_term
        if term is None:
            return None
        if term.dtype != q.dtype:
            term = term.to(q.dtype)
        return term.transpose(0, 1)  # (H,N,Dv) -> (N,H,Dv), a view

    def mixed_batch_term(self, q: torch.Tensor, adapter_names: list[str]) -> torch.Tensor | None:
        """The memory term of a batch whose row b uses adapter ``adapter_names[b]`` ("__base__": none).

        q keeps its batch dimension here, (B, T, H*D) or (B, T, H, D), so rows are grouped by adapter and each
        group gets one batched matmul per layer; the result is (B*T, H, Dv) like ``memory_term``'s.
        """
        if len(adapter_names) != q.shape[0]:
            raise ValueError(
                "Length of `adapter_names` should be the same as the number of inputs, but got "
                f"{len(adapter_names)} and {q.shape[0]} respectively."
            )
        by_row = q.reshape(q.shape[0], -1, self.num_heads, self.head_dim)  # (B,T,H,D)
        groups: dict[str, list[int]] = {}
        for row, name in enumerate(adapter_names):
            groups.setdefault(name, []).append(row)
        term = None
        for name, rows in groups.items():
            index = _row_index(rows)
            group_term = self.memory_term(by_row[index], (name,))
            if group_term is None:  # "__base__", or an adapter without a memory in this layer
                continue
            if term is None:
                term = q.new_zeros(*by_row.shape[:3], self.value_dim)
            term[index] = group_term.reshape(len(rows), *term.shape[1:])
        return None if term is None else term.reshape(-1, self.num_heads, self.value_dim)

    def _memory_source(self) -> tuple[dict[str, Memory], dict[str, nn.Module]]:
        """The memories and kernels in use, as the ModuleDicts' plain dicts (nn.Module attribute reads are slow)."""
        modules = self._modules
        if self.use_reference:
            return modules["reference_memory"]._modules, modules["reference_kernel"]._modules
        return modules["prefixmemory_memory"]._modules, modules["prefixmemory_kernel"]._modules

    def snapshot_reference(self) -> None:
        """Copy the active adapters' current memories (and kernels) into frozen reference copies."""
        for name in self.active_adapters:
            for source, target in (
                (self.prefixmemory_memory, self.reference_memory),
                (self.prefixmemory_kernel, self.reference_kernel),
            ):
                if name in source:
                    target[name] = copy.deepcopy(source[name]).requires_grad_(False)


def _row_index(rows: list[int]) -> slice | list[int]:
    """Rows in arithmetic progression (one row, a block, every k-th) as a slice: a view to read and a strided copy
    to write, where a list of rows gathers and scatters; any other rows as the list."""
    step = rows[1] - rows[0] if len(rows) > 1 else 1
    if step > 0 and rows == list(range(rows[0], rows[-1] + 1, step)):
        return slice(rows[0], rows[-1] + 1, step)
    return rows


class MemoryInjector(nn.Module):
    """Wraps o_proj: adds the memory term handed over by the q-side layer to o_proj's input."""

    def __init__(self, base_layer: nn.Module, slot: MemorySlot):
        super().__init__()
        self.base_layer = base_layer
        self.slot = slot

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        term = self.slot.take()
        if term is not None:
            # Per-head attention output + phi(q) @ M, (N,H,Dv) + (N,H,Dv): the term's strides are heads first, the
            # add reads it as it lies and writes x's layout, so o_proj still gets a contiguous (..., H*D) input.
            x = (x.reshape(term.shape) + term).reshape(x.shape)
        return self._modules["base_layer"](x, *args, **kwargs)  # the plain dict: nn.Module attribute reads are slow

"""Compression methods: a registry of what turns a full model into an on-device sibling.

A method is three functions. ``prepare`` changes the model's structure, so a saved sibling
can be rebuilt before its weights are loaded (what the rebuild needs beyond the config
entry, such as the channels pruning removed, it returns, and gets back when reloading);
``fit`` calibrates, fine-tunes or distils it and returns what it measured (e.g. the real
sparsity); ``deploy`` says what a device would load and run. Config names each
method+level with a short stable id (``ptq-w8a8``) whose parameters say which method to
run; the ``compress`` stage (``stages/compress.py``) runs one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import prune

from siblings.data import Splits
from siblings.engine import logits
from siblings.knobs import BOOLEAN, STRING, Knob, Not, declared, integer, number
from siblings.logs import log
from siblings.measure import Deployment, float_deployment, measure, state_bytes
from siblings.cards import ModelSpec
from siblings.models import SiblingNet, count_parameters, create_model
from siblings.quant import (QuantScheme, calibrate, correct_bias, fake_quant_modules, fold,
                            observe_during_training, quantize_backbone, search_ranges, to_int8)
from siblings.registry import Registry
from siblings.train import fit


@dataclass(frozen=True)
class Job:
    """What a method's ``fit`` may use: the data, its config entry, the seed and the frozen
    full model it compresses (the teacher, for distillation)."""

    splits: Splits
    params: dict
    seed: int
    full: SiblingNet

    def finetune(self, model: nn.Module, epochs: float, lr: float, desc: str,
                 targets: torch.Tensor | None = None,
                 loss_fn: Callable = F.cross_entropy) -> None:
        """Trains ``model`` on the train split (labels unless ``targets`` are given), without
        weight decay: fine-tuning should move the weights no further than the task needs."""
        y = self.splits.labels("train") if targets is None else targets
        fit(model, self.splits.images("train"), y, epochs, self.params["batch_size"], lr, 0.0,
            self.seed, desc, loss_fn)


def _needs_nothing(params: dict, arch: str) -> list[tuple[str, str]]:
    return []


@dataclass(frozen=True)
class Compression:
    """A method: ``prepare``, ``fit`` and ``deploy`` (see the module docstring), its family,
    its config ``knobs`` (beside ``method``), what it does in one line (``doc``), and
    ``needs(params, arch)``: the (architecture, capability) pairs it relies on, which the
    planner checks against the architectures' declarations before any job."""

    prepare: Callable[[SiblingNet, dict, dict | None], dict | None]
    fit: Callable[[SiblingNet, Job], dict]
    deploy: Callable[[SiblingNet, dict], Deployment]
    family: str
    knobs: dict[str, Knob] = field(default_factory=dict)
    doc: str = ""
    needs: Callable[[dict, str], list[tuple[str, str]]] = _needs_nothing


def finetuning(lr: float, epochs_key: str = "finetune_epochs") -> dict[str, Knob]:
    """The knobs of a method that trains the sibling: epochs (required), lr, batch size."""
    return {epochs_key: Knob(number(above=0), "training epochs", required=True),
            "lr": Knob(number(above=0), "learning rate (AdamW, one-cycle)", lr),
            "batch_size": Knob(integer(1), "training batch size", 128)}


COMPRESSIONS: Registry[Compression] = Registry("compression method")


def _no_structure_change(model: SiblingNet, params: dict, stored: dict | None = None) -> None:
    """Nothing to rebuild: the method only changes weight values."""


def _float_deploy(model: SiblingNet, params: dict) -> Deployment:
    return float_deployment(model)


# --- quantization -----------------------------------------------------------------------

def _example_input_images(model: SiblingNet) -> torch.Tensor:
    spec = model.spec
    return torch.zeros(2, spec.in_chans, spec.input_size, spec.input_size)


def _example_input(model: SiblingNet) -> torch.Tensor:
    """A normalised batch, what the quantized backbone sees."""
    return model.preprocess(_example_input_images(model))


def _quant_prepare(model: SiblingNet, params: dict, stored: dict | None = None) -> None:
    scheme = QuantScheme.from_params(params)
    model.backbone = quantize_backbone(model.backbone, scheme, _example_input(model))
    if not fake_quant_modules(model.backbone):
        raise ValueError(f"{model.spec.arch} has no layer PyTorch can quantize")


def _calib_images(job: Job) -> torch.Tensor:
    return job.splits.images("calib")[: job.params["calib_size"]]


REFINE_IMAGES = 500  # one batch for bias correction; enough to rank a few ranges per activation


def _calibrate(model: SiblingNet, job: Job) -> dict:
    """Observes activation ranges, then the optional post-training refinements: empirical
    ``bias_correction`` and a loss-aware ``range_search`` against the full model's outputs."""
    x = _calib_images(job)
    calibrate(model, x)
    if job.params["bias_correction"]:
        correct_bias(model.backbone, fold(job.full.backbone), model.preprocess(x[:REFINE_IMAGES]))
    if job.params.get("range_search"):  # absent where the observer cannot take it
        search_ranges(model, x[:REFINE_IMAGES], logits(job.full, x[:REFINE_IMAGES]))
    return {"calibration_images": len(x)}


def _qat_fit(model: SiblingNet, job: Job) -> dict:
    """Calibrate, then fine-tune through the fake quantizers (STE), then freeze the ranges.
    With ``observer: ema`` (PyTorch's QAT recipe) the ranges keep tracking during training;
    with the others they stay as calibrated. ``distill`` trains on the full model's tempered
    soft labels (Hinton et al.) instead of the hard labels."""
    measured = _calibrate(model, job)
    observe_during_training(model, QuantScheme.from_params(job.params).observer == "ema")
    targets, loss = None, F.cross_entropy
    if job.params["distill"]:  # the full model's soft labels carry more signal per image
        targets = logits(job.full, job.splits.images("train"))
        loss = kd_loss(job.params["temperature"])
    job.finetune(model, job.params["finetune_epochs"], job.params["lr"], "QAT",
                 targets=targets, loss_fn=loss)
    observe_during_training(model, False)
    return measured


def _packed_bytes(model: SiblingNet) -> int:
    """Bytes with every quantized weight bit-packed at its own layer's width (edge and
    depthwise layers may have more bits than the rest) and everything else in float32."""
    bits = {id(m.weight): (m.weight_fake_quant.quant_max - m.weight_fake_quant.quant_min + 1)
            .bit_length() - 1 for m in model.modules() if hasattr(m, "weight_fake_quant")}
    return (sum(p.numel() * bits.get(id(p), 32) for p in model.parameters()) + 7) // 8


def _quant_deploy(model: SiblingNet, params: dict) -> Deployment:
    """8-bit: PyTorch's real int8 model; narrower: bit-packed weights, no CPU runtime.

    An architecture whose graph PyTorch cannot convert keeps its fake-quantized sibling and
    is flagged in ``runtime`` (and so in the report) with the converter's error.
    """
    scheme = QuantScheme.from_params(params)
    packed = _packed_bytes(model)
    if not scheme.is_int8:
        return Deployment(None, packed,
                          f"none (no w{scheme.weight_bits}a{scheme.act_bits} CPU kernels)")
    try:
        int8 = nn.Sequential(model.preprocess, to_int8(model.backbone))
        int8(_example_input_images(model))
    except Exception as err:  # the converter and int8 kernels raise many types
        reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:120]}"
        log.warning("%s: no PyTorch int8 model (%s)", model.spec.arch, reason)
        return Deployment(None, packed, f"none (PyTorch int8 conversion failed: {reason})")
    return Deployment(int8, state_bytes(int8), "int8 (PyTorch onednn)")


PTQ_KNOBS = {
    **declared(QuantScheme),
    "calib_size": Knob(integer(1, nullable=True), "calibration images (null: all of "
                       "dataset.calib_size)", None),
    "bias_correction": Knob(BOOLEAN, "each layer's bias absorbs the mean output shift "
                            f"quantization causes, measured on {REFINE_IMAGES} calibration "
                            "images", False),
    "range_search": Knob(BOOLEAN, "scale every signed activation's range by whichever of "
                         "0.7-1.6 brings the outputs closest to the full model's in KL",
                         False, when={"observer": ("minmax", "ema")}),
}
COMPRESSIONS.register("ptq")(Compression(
    _quant_prepare, _calibrate, _quant_deploy, "quantization", PTQ_KNOBS,
    "post-training quantization with PyTorch's FX tooling, batch norm folded"))
COMPRESSIONS.register("qat")(Compression(
    _quant_prepare, _qat_fit, _quant_deploy, "quantization",
    {**PTQ_KNOBS, **finetuning(5e-4),
     "distill": Knob(BOOLEAN, "fine-tune on the full model's soft labels instead of the hard "
                     "labels", False),
     "temperature": Knob(number(above=0), "softmax temperature of the soft labels", 4.0,
                         when={"distill": (True,)})},
    "quantization-aware fine-tuning from the full model through the fake quantizers (STE)"))


# --- unstructured pruning ---------------------------------------------------------------

def _depthwise(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d) and layer.groups > 1 and layer.groups == layer.in_channels


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Conv and linear weights that global magnitude pruning competes over.

    Kept dense, as is common practice: the first (input) and last (classifier) layers, and
    depthwise convolutions. Their weights are few and look small globally, yet each is a
    whole channel's only filter: a global 80% threshold pruned 90% of ResNet-18's 1-channel
    stem, and MobileNetV2's depthwise filters, which left it at 29% accuracy.
    """
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return [(m, "weight") for m in layers[1:-1] if not _depthwise(m)]


def sparsity(model: nn.Module) -> float:
    """Measured fraction of exact zeros among the prunable weights."""
    weights = [getattr(m, name) for m, name in prunable_weights(model)]
    return sum((w == 0).sum().item() for w in weights) / sum(w.numel() for w in weights)


def _prune_fit(model: SiblingNet, job: Job) -> dict:
    """Global L1 magnitude pruning, fine-tuned with the mask fixed, then made permanent."""
    model.to(memory_format=torch.contiguous_format)  # global pruning flattens with view()
    targets = prunable_weights(model.backbone)
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured,
                              amount=job.params["sparsity"])
    log.info("pruned to %.4f sparsity; fine-tuning %s epochs", sparsity(model.backbone),
             job.params["finetune_epochs"])
    job.finetune(model, job.params["finetune_epochs"], job.params["lr"], "fine-tune")
    for module, name in targets:
        prune.remove(module, name)
    return {"sparsity": sparsity(model.backbone)}


def _sparse_deploy(model: SiblingNet, params: dict) -> Deployment:
    """Pruned weights stored as float32 nonzeros plus a 1-bit mask; dense kernels run them
    (PyTorch has no faster sparse convolution on CPU)."""
    pruned = {id(getattr(m, n)) for m, n in prunable_weights(model.backbone)}
    bits = sum(32 * int((p != 0).sum()) + p.numel() if id(p) in pruned else 32 * p.numel()
               for p in model.parameters())
    return Deployment(model, (bits + 7) // 8, "float32 (sparse storage)")


COMPRESSIONS.register("prune")(Compression(
    _no_structure_change, _prune_fit, _sparse_deploy, "unstructured pruning",
    {"sparsity": Knob(number(0, below=1), "fraction of the prunable weights set to zero",
                      required=True), **finetuning(1e-3)},
    "global L1 magnitude pruning of all but the input and output layers, fine-tuned with the "
    "mask fixed"))


# --- structured channel pruning ---------------------------------------------------------

@dataclass(frozen=True)
class PruningScope:
    """One torch-pruning run: the module it prunes, an input it traces with, the layers
    whose outputs must keep their width, and the attention heads it must respect."""

    module: nn.Module
    example: torch.Tensor
    ignored: list[nn.Module]
    num_heads: dict[nn.Module, int]


def _inputs_of(model: SiblingNet, modules: list[nn.Module]) -> list[torch.Tensor]:
    """What each of ``modules`` receives when the model sees the example batch."""
    seen: dict[nn.Module, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda m, inputs: seen.setdefault(m, inputs[0]))
             for m in modules]
    try:
        with torch.no_grad():
            model(_example_input_images(model))
    finally:
        for hook in hooks:
            hook.remove()
    return [seen[m] for m in modules]


def _pruning_scopes(model: SiblingNet) -> list[PruningScope]:
    """Where torch-pruning may remove channels, by what the model is made of.

    - The whole model, its classifier kept whole; in a ViT every attention's heads are
      declared (torch-pruning then shrinks each head's width, not the head count), and in
      an MLP-Mixer the token-mixing MLPs keep their output (the token count).
    - ShuffleNetV2's channel shuffle is a reshape torch-pruning cannot follow, so there
      each unit's main branch is pruned inside (its last convolution keeps its width),
      and the shuffled block outputs keep their channels. A branch that starts with a
      depthwise convolution on the unit's input (the downsampling units' shortcut) has
      no inner channels to remove.
    """
    from timm.layers import Attention
    from timm.models.mlp_mixer import MixerBlock
    from torchvision.models.shufflenetv2 import InvertedResidual

    branches = [(b, convs) for m in model.modules() if isinstance(m, InvertedResidual)
                for b in (m.branch1, m.branch2)
                if (convs := [c for c in b.modules() if isinstance(c, nn.Conv2d)])
                and convs[0].groups == 1]
    if branches:
        inputs = _inputs_of(model, [b for b, _ in branches])
        return [PruningScope(b, x, [convs[-1]], {}) for (b, convs), x in zip(branches, inputs)]
    classifier = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]
    tokens = [m.mlp_tokens.fc2 for m in model.modules() if isinstance(m, MixerBlock)]
    heads = {m.qkv: m.num_heads for m in model.modules() if isinstance(m, Attention)}
    return [PruningScope(model, _example_input_images(model), [classifier, *tokens], heads)]


def _resize_attention(model: nn.Module) -> None:
    """A timm attention whose heads lost width recomputes its head size (and scale) from
    its pruned qkv projection."""
    from timm.layers import Attention

    for m in model.modules():
        if isinstance(m, Attention):
            m.head_dim = m.qkv.out_features // (3 * m.num_heads)
            m.attn_dim = m.head_dim * m.num_heads
            m.scale = m.head_dim ** -0.5


def _channel_prepare(model: SiblingNet, params: dict, stored: dict | None = None) -> dict:
    """Removes ``channel_ratio`` of the channels of every prunable group (torch-pruning,
    L1 group magnitude) in each scope :func:`_pruning_scopes` finds, and returns the
    channels it removed. A saved sibling reloads by replaying them (``stored``): which
    channels go depends on the weights, and where an architecture slices a concatenation
    (GhostNet) so do the pruned shapes.
    """
    import torch_pruning as tp

    replay = stored["pruning_history"] if stored else None
    history = []
    for i, scope in enumerate(_pruning_scopes(model)):
        pruner = tp.pruner.MetaPruner(scope.module, scope.example,
                                      importance=tp.importance.GroupMagnitudeImportance(p=1),
                                      pruning_ratio=params["channel_ratio"],
                                      ignored_layers=scope.ignored, num_heads=scope.num_heads)
        if replay is None:
            pruner.step()
        else:
            pruner.load_pruning_history(replay[i])
        history.append([[name, bool(out), [int(j) for j in idxs]]
                        for name, out, idxs in pruner.pruning_history()])
    _resize_attention(model)
    return {"pruning_history": history}


def _channel_fit(model: SiblingNet, job: Job) -> dict:
    before = count_parameters(job.full)
    job.finetune(model, job.params["finetune_epochs"], job.params["lr"], "fine-tune")
    return {"parameter_reduction": 1.0 - count_parameters(model) / before}


COMPRESSIONS.register("channel-prune")(Compression(
    _channel_prepare, _channel_fit, _float_deploy, "structured pruning",
    {"channel_ratio": Knob(number(above=0, below=1), "fraction of the channels removed from "
                           "every prunable layer", required=True), **finetuning(1e-3)},
    "torch-pruning removes channels by L1 group importance, then fine-tunes",
    lambda params, arch: [(arch, "channel_pruning")]))


# --- knowledge distillation -------------------------------------------------------------

def student_spec(parent: ModelSpec, params: dict) -> ModelSpec:
    """``student: self`` is a narrower copy of the parent (``width_factor``); any other
    registered architecture is built at ``width`` (1.0 if unset)."""
    if params["student"] == "self":
        return replace(parent, width=parent.width * params["width_factor"], pretrained=False)
    return replace(parent, arch=params["student"], width=params["width"], extra={},
                   pretrained=False)


def _kd_prepare(model: SiblingNet, params: dict, stored: dict | None = None) -> None:
    """The sibling shares no weights with its parent: a fresh student replaces the backbone."""
    student = create_model(student_spec(model.spec, params))
    model.spec = student.spec
    model.backbone = student.backbone


def kd_loss(temperature: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Hinton et al.'s soft-label loss: KL to the teacher's tempered softmax, times T^2."""

    def loss(out: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(out / temperature, 1),
                        F.softmax(teacher_logits / temperature, 1),
                        reduction="batchmean") * temperature ** 2

    return loss


def _kd_fit(model: SiblingNet, job: Job) -> dict:
    soft = logits(job.full, job.splits.images("train"))
    job.finetune(model, job.params["epochs"], job.params["lr"], f"distil {model.spec.arch}",
                 targets=soft, loss_fn=kd_loss(job.params["temperature"]))
    return {"student": model.spec.arch, "student_width": model.spec.width}


def _kd_needs(params: dict, arch: str) -> list[tuple[str, str]]:
    """A narrower copy needs the parent's width knob; another student, its own when it is
    asked for a width other than 1."""
    if params["student"] == "self":
        return [(arch, "width")]
    return [(params["student"], "width")] if params["width"] != 1.0 else []


COMPRESSIONS.register("kd")(Compression(
    _kd_prepare, _kd_fit, _float_deploy, "distillation",
    {"student": Knob(STRING, "'self' (a narrower copy of the parent) or a registered "
                     "architecture", required=True),
     "width_factor": Knob(number(above=0, below=1), "the student's fraction of the parent's "
                          "width", 0.5, when={"student": ("self",)}),
     "width": Knob(number(above=0, maximum=4), "the student architecture's width", 1.0,
                   when={"student": Not("self")}),
     **finetuning(3e-3, "epochs"),
     "temperature": Knob(number(above=0), "softmax temperature of the soft labels", 4.0)},
    "distillation into a fresh student on the full model's soft labels (Hinton et al.)",
    _kd_needs))

"""Quantization-aware fine-tuning (QAT): the last resort when post-training INT8 cannot
hold --max-drop.

NNCF inserts fake quantizers into the run's PyTorch model (ranges initialised on the
calibration samples, as post-training quantization does), the same Trainer as `edgetl
finetune` fine-tunes weights and quantizer ranges together for a few epochs at a tenth of
the run's learning rate (at most 1e-4; BatchNorm statistics frozen, the best epoch on the validation
split kept), and the result is converted to an OpenVINO IR whose FakeQuantize operations
OpenVINO executes in INT8. NNCF's torch export writes FakeQuantize, not the QDQ that ONNX
Runtime and TensorRT consume, so QAT serves the openvino target.
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path

from edgetl.core import progress
from edgetl.core.card import ModelCard
from edgetl.core.errors import ArtifactError, BackendUnavailable, DataError
from edgetl.data.samples import Samples
from edgetl.export.frontend_kernels import generate_kernels_openvino
from edgetl.export.onnx_export import FRONTEND_SCOPE
from edgetl.quantize.cpu import CpuTarget, cpu_target
from edgetl.quantize.settings import QatOptions


def run_of(card: ModelCard) -> Path:
    """The run directory an exported model came from (QAT trains its checkpoint)."""
    run = card.source.get("run")
    if not run or not (Path(run) / "model.pt").is_file():
        raise ArtifactError(f"quantization-aware fine-tuning needs the model's run directory ({run}) and its checkpoint",
                            hint="keep the run that `edgetl export` exported, or drop --qat")
    return Path(run)


def qat_openvino(card: ModelCard, out: Path, calib: Samples, options: QatOptions, seed: int = 0,
                 cpu: CpuTarget | None = None) -> dict:
    """Fine-tune the run of `card` with fake quantization and write the INT8 IR `out` for
    the CPU kind `cpu` (default: portable); returns what happened (epochs, learning rate,
    best epoch, history, seconds)."""
    from edgetl.quantize.openvino import import_nncf

    try:
        import openvino as ov
        import torch

        nncf = import_nncf()
    except ImportError:
        raise BackendUnavailable("quantization-aware fine-tuning needs torch, NNCF and OpenVINO",
                                 hint="pip install 'edgetl[all]'") from None
    from edgetl.data.folders import open_folder
    from edgetl.data.sample_cache import cached_split
    from edgetl.finetune.compute import training_compute
    from edgetl.finetune.inputs import training_input
    from edgetl.finetune.loop import Trainer
    from edgetl.finetune.run import load_run
    from edgetl.finetune.settings import FinetuneSettings
    from edgetl.finetune.training import Distributed, as_source, resolve_device, seed_everything, set_torch_threads
    from edgetl.modality import preprocessing_of

    options.check()
    started = time.perf_counter()
    set_torch_threads(None)  # the quantize command's --threads (edgetl/core/threads.py)
    run = run_of(card)
    model, run_card = load_run(run)
    run_cfg = run_card.source.get("config", {})
    # Small steps: the weights are already trained (a linear-probe run's backbone never
    # was at all), only the quantization noise is new.
    lr = options.lr or min(0.1 * run_cfg.get("lr", 1e-3), 1e-4)
    cfg = FinetuneSettings(strategy="full", epochs=options.epochs, patience=options.epochs, lr=lr,
                         batch_size=options.batch_size or run_cfg.get("batch_size", 32),
                         image=FinetuneSettings.from_record(run_cfg).image,
                         freeze_bn_stats=True, amp=False, device=options.device, seed=seed)
    cfg.check()
    dist = Distributed()
    device = resolve_device(cfg.device, dist)
    seed_everything(seed)
    # x86 CPUs without VNNI saturate in 8-bit weight x activation products (quantize/cpu.py):
    # for the portable target NNCF's overflow fix halves the weight range in every layer,
    # so that the fine-tuned fake quantization is what OpenVINO computes on every CPU
    # (without it, 97.8% in torch became 94.7% in OpenVINO on an AVX2 CPU, on digits).
    overflow_fix = nncf.OverflowFix((cpu or cpu_target(None)).overflow_fix)
    progress.info(f"QAT: inserting fake quantizers into {run.name}'s model (ranges from {len(calib)} samples)")
    with _quiet_tracing(), progress.library_progress():
        qmodel = nncf.quantize(model, nncf.Dataset([torch.from_numpy(b) for b in calib.batches(1)]),
                               preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(calib),
                               advanced_parameters=nncf.AdvancedQuantizationParameters(
                                   disable_bias_correction=True, overflow_fix=overflow_fix,
                                   activations_quantization_params=_per_tensor_activations()))
    qmodel = qmodel.to(device)
    # Two "stages" at the same learning rate: the features, and NNCF's quantizer ranges
    # (trainable too). NNCF keeps integer bookkeeping in parameters as well, which must
    # stay out of the optimizer and of requires_grad_.
    own = {id(p) for p in [*qmodel.features.parameters(), *qmodel.head.parameters()]}
    ranges = torch.nn.ParameterList([p for p in qmodel.parameters() if id(p) not in own and p.is_floating_point()])
    stages = [qmodel.features, ranges]
    pre = preprocessing_of(card)
    data = card.source.get("data")
    if not data or not Path(data).is_dir():
        raise DataError(f"quantization-aware fine-tuning trains on the run's data set ({data}), which is not there",
                        hint="restore the data set folder the run was trained on, or drop --qat")
    splits = open_folder(data, val_split=run_cfg.get("val_split", 0.2), seed=run_cfg.get("seed", 0),
                         classes=card.labels, modality=card.modality)
    inputs = training_input(pre, device, cfg, data)
    x_train, y_train = as_source(*cached_split(splits["train"], pre), device, inputs)
    x_val, y_val = as_source(*cached_split(splits["val"], pre), device, inputs)
    progress.info(f"QAT: fine-tuning {cfg.epochs} epoch(s) at lr {lr:g} on {len(x_train)} training samples "
                  "(the first QAT on a machine compiles NNCF's fake-quantization kernels, a minute or more)")
    # NNCF gives that compilation 60 s by default, too little on a busy 2-core machine.
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")
    from nncf.torch.extensions import ExtensionLoaderTimeoutException

    # NNCF's fake quantizers train as they always have: f32 and NCHW on the CPU (neither
    # channels-last nor bf16 measured with them); mixed precision on CUDA as any training.
    compute = training_compute(device, images=device.type == "cuda", amp=cfg.amp and device.type == "cuda")
    trainer = Trainer(qmodel, stages, cfg, device, dist, inputs=inputs, compute=compute)
    try:
        with _quiet_tracing():
            history, best_state, best_epoch = trainer.fit(x_train, y_train, x_val, y_val)
    except ExtensionLoaderTimeoutException:
        raise BackendUnavailable("NNCF could not compile its fake-quantization kernels in time",
                                 hint="set NNCF_EXTENSION_LOAD_TIMEOUT=0 (no limit) and retry; "
                                      "remove ~/.cache/torch_extensions/*/nncf if a build was interrupted") from None
    qmodel.load_state_dict(best_state)
    qmodel = qmodel.cpu().eval()
    dynamic_batch = [-1 if d is None else d for d in card.input["shape"]]
    with _quiet_tracing(), torch.no_grad():
        ov_model = ov.convert_model(qmodel, example_input=torch.from_numpy(pre.dummy_input(1)),
                                    input=[tuple(dynamic_batch)])
    generate_kernels_openvino(ov_model, FRONTEND_SCOPE)  # a speech front-end's DFT: operations, not a megabyte
    ov.save_model(ov_model, str(out), compress_to_fp16=False)
    return {"epochs": cfg.epochs, "lr": lr, "best_epoch": best_epoch, "device": str(device),
            "overflow_fix": overflow_fix.value,
            "history": [{k: h[k] for k in ("epoch", "train_loss", "val_accuracy")} for h in history],
            "seconds": time.perf_counter() - started}


def _per_tensor_activations():
    """One range per activation tensor, as post-training quantization makes them. NNCF's
    torch default gives depthwise convolutions per-channel input ranges, and OpenVINO
    2026.4's AMX kernels compute such an IR wrongly at batch 1 (measured: constant logits,
    0% agreement, while batch 2 and every AVX-512/AVX2 CPU are right)."""
    from nncf.quantization.advanced_parameters import QuantizationParameters

    return QuantizationParameters(per_channel=False)


@contextlib.contextmanager
def _quiet_tracing():
    """NNCF and the TorchScript tracer warn about every fake-quantize call they trace."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield

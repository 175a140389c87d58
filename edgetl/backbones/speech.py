"""Speech backbones (modality "audio"): raw 16 kHz waveform [batch, samples] in, features out.

Each carries its log-mel front-end (backbones/frontend.py) inside the model, so exported
models take the waveform and the device computes exactly the training features.

- `speech_embedding`: Google's speech embedding (76x32 log-mel frames -> 96-d), pretrained
  on a large speech corpus, whose ONNX file openWakeWord 0.4.0 ships; rebuilt here as a
  plain torch module (exportable, trainable, quantizable) with the weights read through
  onnx2torch. A 1 s clip gives 3 embedding windows (step 8 frames); the features are their
  mean and maximum (192-d),
  layer-normalised.
- `kws_cnn`: a small depthwise-separable CNN (DS-CNN class) on 40 log-mel bands, trained
  from scratch: the baseline transfer learning must beat.
- `wav2vec2_base`, `hubert_base`: torchaudio's self-supervised speech models (95M
  parameters, no log-mel: a convolutional feature encoder on the waveform, then 12
  transformer layers), features = the last layer averaged over time (768-d). Weights
  through torchaudio's bundles and torch.hub's cache; offline they must be in the cache.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import torch
from torch import nn

from edgetl.backbones.frontend import LogMel, SpecAugment
from edgetl.backbones.registry import Backbone, BackboneInfo, Family, register_family
from edgetl.backbones.stages import Stage, hub_cache_file, hub_state_dict, load_into, read_state_dict
from edgetl.core.errors import WeightsUnavailable
from edgetl.modality.audio import AudioPreprocessing

SPEECH_PREPROCESSING = AudioPreprocessing(sample_rate=16000, window=16000)
EMBEDDING = "speech_embedding"
KWS_CNN = "kws_cnn"
EMBEDDING_FRAMES, EMBEDDING_STEP = 76, 8  # openWakeWord's windows of log-mel frames


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def frontend_parts(frontend: LogMel) -> dict:
    """What the card says of the front-end: its fixed floor (a card without one is a run
    from before it: each window's own floor), and the samples before a hop's new audio a
    frame needs (n_fft - hop), so a stream computes each frame once."""
    return {"floor_db": frontend.floor_db, "frame_context": frontend.n_fft - frontend.hop,
            "frame_samples": frontend.hop}


# ---------------------------------------------------------------- speech embedding

def _act(x: torch.Tensor) -> torch.Tensor:
    """The embedding's activation: LeakyReLU(0.2), then floored at -0.4."""
    return torch.clamp(nn.functional.leaky_relu(x, 0.2), min=-0.4)


class EmbeddingNet(nn.Module):
    """[n, 76, 32] log-mel windows -> [n, 96]: 20 convolutions in 5 blocks, as in the ONNX file."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 24, 3, bias=False)
        self.stem_bn = nn.BatchNorm2d(24, eps=1e-3)
        widths = [(24, 24), (24, 48), (48, 48), (48, 72), (72, 72), (72, 96), (96, 96), (96, 96), (96, 96)]
        convs = []
        for cin, cout in widths:  # (1x3 padded along the mel axis, then 3x1 along time) pairs
            convs += [nn.Conv2d(cin, cout, (1, 3), padding=(0, 1)), nn.Conv2d(cout, cout, (3, 1))]
        self.convs = nn.ModuleList(convs)
        # after which conv pair a max-pool follows, and its size
        self.pools = {0: (2, 2), 2: (1, 2), 4: (2, 2), 6: (1, 2), 8: (2, 2)}
        self.out = nn.Conv2d(96, 96, (3, 1), bias=False)

    def blocks(self) -> list[list[nn.Module]]:
        """Modules by block (stages for unfreezing), input to output."""
        c = list(self.convs)
        return [[self.stem, self.stem_bn, *c[0:2]], c[2:6], c[6:10], c[10:14], c[14:18], [self.out]]

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(mel[:, None], (1, 1))  # the ONNX graph pads the mel axis by one each side
        x = _act(self.stem_bn(torch.relu(self.stem(x))))
        pairs = len(self.convs) // 2
        for i in range(pairs):
            x = _act(self.convs[2 * i + 1](_act(self.convs[2 * i](x))))
            if i in self.pools:
                x = nn.functional.max_pool2d(x, self.pools[i])
        return self.out(x).flatten(1)


class SpeechEmbedding(nn.Module):
    """Waveform -> log-mel -> embedding of each 76-frame window (step 8) -> [mean, max] (192-d)."""

    def __init__(self, window: int = 16000):
        super().__init__()
        self.frontend = LogMel()
        self.specaugment = SpecAugment(freq_masks=1, freq_width=3, time_masks=1, time_width=8)
        self.embedding = EmbeddingNet()
        frames = self.frontend.frames(window)
        if frames < EMBEDDING_FRAMES:
            raise ValueError(f"a {window}-sample window gives {frames} frames, fewer than the {EMBEDDING_FRAMES} needed")
        self.starts = list(range(0, frames - EMBEDDING_FRAMES + 1, EMBEDDING_STEP))  # static: exports as slices
        # The embedding's values reach +-40; a head learns far faster on unit-scale features
        # (openWakeWord's heads normalise too). No parameters: nothing to freeze or train.
        self.norm = nn.LayerNorm(192, elementwise_affine=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        mel = self.specaugment(self.frontend(wave))
        windows = torch.cat([mel[:, s:s + EMBEDDING_FRAMES] for s in self.starts])  # [windows*batch, 76, 32]
        # the batch size stays implicit: the head then depends on the embeddings alone
        emb = self.embedding(windows).reshape(len(self.starts), -1, self.embedding.out.out_channels)
        return self.norm(torch.cat([emb.mean(0), emb.amax(0)], dim=1))


def embedding_onnx_file() -> Path | None:
    """openWakeWord's packaged embedding_model.onnx, found without importing the package."""
    spec = importlib.util.find_spec("openwakeword")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "models" / "embedding_model.onnx"
    return path if path.is_file() else None


def load_embedding_onnx(net: EmbeddingNet, path: Path) -> None:
    """Copy the weights of the ONNX embedding model (converted by onnx2torch) into `net`,
    layer by layer in graph order, every shape checked."""
    try:
        import onnx
        import onnx2torch
    except ImportError:
        raise WeightsUnavailable("reading the speech embedding's ONNX weights needs onnx and onnx2torch",
                                 hint="pip install 'edgetl[train]'") from None
    try:
        converted = onnx2torch.convert(onnx.load(str(path)))
    except Exception as exc:  # onnx and onnx2torch raise many kinds for a wrong file
        raise WeightsUnavailable(f"cannot read the speech embedding from {path}: {str(exc).splitlines()[0][:200]}",
                                 hint="pass openWakeWord 0.4.0's embedding_model.onnx, or a state dict") from None
    theirs = [m for m in converted.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    ours = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]  # registered in graph order
    if len(theirs) != len(ours) or any(type(a) is not type(b) or a.weight.shape != b.weight.shape
                                       for a, b in zip(theirs, ours)):
        raise WeightsUnavailable(f"{path} is not the speech embedding model edgetl knows (openWakeWord 0.4.0's)",
                                 hint="pass openWakeWord 0.4.0's embedding_model.onnx, or a state dict")
    with torch.no_grad():
        for a, b in zip(theirs, ours):
            b.load_state_dict(a.state_dict())


def _embedding_build(name: str, weights: str, listing: bool = False) -> Backbone:
    """`listing`: only for its description (no weights read). Speech models are small
    enough to build on the CPU even then (the mel filterbank cannot be made on the meta device)."""
    model = SpeechEmbedding(SPEECH_PREPROCESSING.window)
    source = weights
    if weights == "default" and not listing:
        file = embedding_onnx_file()
        if file is None:
            raise WeightsUnavailable("the speech embedding ships with openwakeword 0.4.0, which is not installed",
                                     hint="pip install openwakeword==0.4.0, or pass --weights none")
        load_embedding_onnx(model.embedding, file)
        source = f"openwakeword ({file.name})"
    elif weights.endswith(".onnx"):
        load_embedding_onnx(model.embedding, Path(weights))
    elif weights not in ("default", "none"):
        load_into(model, read_state_dict(weights), weights)
    stages = [Stage(f"embedding.block{i}", mods) for i, mods in enumerate(model.embedding.blocks())]
    # A hop of one embedding step (8 frames, 80 ms) shifts the windows by whole steps, so the
    # streaming detector reuses the embeddings the previous hops computed; 8 hops of
    # smoothing average over 640 ms, as the default's 6 hops of 100 ms do.
    parts = {"scope": "embedding", "frames": EMBEDDING_FRAMES, "step": EMBEDDING_STEP, "starts": model.starts,
             "frame_samples": model.frontend.hop, **frontend_parts(model.frontend)}
    return Backbone(name, model, 192, stages, SPEECH_PREPROCESSING, source,
                    streaming={"hop_ms": EMBEDDING_STEP * 10.0, "smoothing": 8}, parts=parts)


# ---------------------------------------------------------------- small CNN from scratch

def _ds_block(cin: int, cout: int, stride=1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
                         nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class KwsCnn(nn.Module):
    """Waveform -> 40 log-mel bands -> DS-CNN (a 10x4 stride-2 convolution, four depthwise-
    separable blocks, average pooling) -> 64-d features."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.frontend = LogMel(n_mels=40, f_min=20.0, f_max=7600.0)
        self.specaugment = SpecAugment(freq_masks=2, freq_width=5, time_masks=2, time_width=10)
        self.stem = nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, width, (10, 4), 2, (5, 1), bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(*[_ds_block(width, width) for _ in range(4)])

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.specaugment(self.frontend(wave))[:, None]  # [batch, 1, frames, bands]
        return self.blocks(self.stem(x)).mean(dim=(2, 3))


def _kws_build(name: str, weights: str, listing: bool = False) -> Backbone:
    model = KwsCnn()
    if weights not in ("default", "none"):
        load_into(model, read_state_dict(weights), weights)
    stages = [Stage("stem", [model.stem])] + [Stage(f"blocks.{i}", [b]) for i, b in enumerate(model.blocks)]
    return Backbone(name, model, 64, stages, SPEECH_PREPROCESSING, weights if weights != "default" else "none",
                    parts=frontend_parts(model.frontend))


# ---------------------------------------------------------------- wav2vec 2.0 and HuBERT

SSL_BUNDLES = {"wav2vec2_base": "WAV2VEC2_BASE", "hubert_base": "HUBERT_BASE"}  # torchaudio.pipelines names


def _bundle(name: str):
    import torchaudio.pipelines

    return getattr(torchaudio.pipelines, SSL_BUNDLES[name])


def ssl_weights_url(name: str) -> str:
    return f"https://download.pytorch.org/torchaudio/models/{_bundle(name)._path}"


class SelfSupervisedSpeech(nn.Module):
    """A torchaudio Wav2Vec2Model (wav2vec 2.0 or HuBERT) -> its last layer averaged over time."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.model(wave)
        return hidden.mean(dim=1)


def _ssl_build(name: str, weights: str, listing: bool = False) -> Backbone:
    import torchaudio

    bundle = _bundle(name)
    # LayerDrop off: a layer skipped at random would leave parameters without gradients
    # (DistributedDataParallel refuses that) and make epochs incomparable.
    model = torchaudio.models.wav2vec2_model(**{**bundle._params, "encoder_layer_drop": 0.0})
    source = weights
    if weights == "default" and not listing:
        url = ssl_weights_url(name)
        model.load_state_dict(hub_state_dict(name, url, lambda: torch.hub.load_state_dict_from_url(url, progress=True)))
        source = f"torchaudio {SSL_BUNDLES[name]} ({hub_cache_file(url).name})"
    features = SelfSupervisedSpeech(model)
    if weights not in ("default", "none"):  # torchaudio's checkpoint layout, or these features' own
        state = read_state_dict(weights)
        if state and all(k.startswith("model.") for k in state):
            state = {k.removeprefix("model."): v for k, v in state.items()}
        load_into(model, state, weights)
    enc = model.encoder
    stages = [Stage("feature_extractor", [model.feature_extractor]),
              Stage("feature_projection+pos_conv", [enc.feature_projection, enc.transformer.pos_conv_embed,
                                                    enc.transformer.layer_norm])]
    stages += [Stage(f"layers.{i}", [layer]) for i, layer in enumerate(enc.transformer.layers)]
    return Backbone(name, features, enc.feature_projection.projection.out_features, stages, SPEECH_PREPROCESSING,
                    source)


# ---------------------------------------------------------------- registry

_BUILDERS = {EMBEDDING: _embedding_build, KWS_CNN: _kws_build, **{n: _ssl_build for n in SSL_BUNDLES}}
_DESCRIPTIONS = {
    EMBEDDING: "Google's speech embedding (openWakeWord 0.4.0's weights) on a log-mel front-end",
    KWS_CNN: "small DS-CNN on 40 log-mel bands, trained from scratch (no pretrained weights)",
    "wav2vec2_base": "wav2vec 2.0 base (torchaudio bundle, LibriSpeech 960 h, self-supervised), 768-d",
    "hubert_base": "HuBERT base (torchaudio bundle, LibriSpeech 960 h, self-supervised), 768-d",
}


def _weights_ref(name: str) -> str | None:
    if name == EMBEDDING:
        file = embedding_onnx_file()
        return f"file:{file}" if file else None
    if name in SSL_BUNDLES:
        return f"torch-hub:{hub_cache_file(ssl_weights_url(name)).name}"
    return None


@functools.cache
def _info(name: str) -> BackboneInfo:
    b = _BUILDERS[name](name, "none", listing=True)
    return BackboneInfo(name, "audio", "speech", _DESCRIPTIONS[name], _params(b.features), b.feature_dim,
                        SPEECH_PREPROCESSING.window, _weights_ref(name))


register_family(Family(
    name="speech", modality="audio",
    names=lambda: list(_BUILDERS),
    build=lambda name, weights: _BUILDERS[name](name, weights),
    info=_info,
    accepts=lambda n: n in _BUILDERS,
))

__all__ = ["EmbeddingNet", "KwsCnn", "SpeechEmbedding", "embedding_onnx_file"]

"""The training transform of each modality, chosen by the modality's name: cached
batches of a split -> model inputs on the training device, as they are for evaluation,
augmented for training. The modality modules stay torch-free and know nothing of
training; a new modality adds its transform here."""
from __future__ import annotations


def _image(pre, device, options, data):
    from edgetl.finetune.augment import ImageTrainingInput

    return ImageTrainingInput(pre.mean, pre.std, device, hflip=options.image.hflip)


def _audio(pre, device, options, data):
    from edgetl.finetune.augment_audio import AudioTrainingInput

    return AudioTrainingInput(pre, device, options.audio, data, seed=options.seed)


TRAINING_INPUTS = {"image": _image, "audio": _audio}


def training_input(preprocessing, device, options, data=None):
    """The transform for `preprocessing`'s modality; `options` is the fine-tuning config
    (flips, noise, shift and gain ranges), `data` the data set whose background noise an
    audio transform mixes in."""
    return TRAINING_INPUTS[preprocessing.kind](preprocessing, device, options, data)

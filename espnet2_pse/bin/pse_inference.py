"""Enhance a data dir with a trained model: ``python -m espnet2_pse.bin.pse_inference``.

ESPnet's ``enh_inference`` (same options) with this package's classes registered, so models
using them load, and ``--fs`` defaulting to 16 kHz, the rate of every model here.
PSEModel adds no parameters, so the stock inference model is the right one.

Speaker-conditioned models: stock ``SeparateSpeech`` drops every input but the mixture, so
when ``--data_path_and_name_and_type`` names ``enroll_ref1`` (npy embeddings, or enrollment
audio for a model with an internal speaker encoder) each utterance is enhanced here instead,
whole, with its own enrollment, optionally refined on the fly (``--refine`` with the distilled
student, see ``espnet2_pse.inference.conditioned``). The output layout is enh_inference's:
``<output_dir>/wavs/1/<key>.wav`` and ``<output_dir>/spk1.scp``. Example::

    python -m espnet2_pse.bin.pse_inference --train_config exp/cond/config.yaml \\
        --model_file exp/cond/valid.loss.best.pth --output_dir exp/cond/enhanced \\
        --data_path_and_name_and_type dump/test/wav.scp,speech_mix,sound \\
        --data_path_and_name_and_type exp/enroll/test/enroll_spk1.scp,enroll_ref1,npy
"""

import argparse
import inspect
import logging
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

import espnet2_pse  # noqa: F401  (registers our classes before the parser is built)
from espnet2.bin import enh_inference
from espnet2.fileio.sound_scp import SoundScpWriter
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed
from espnet.utils.cli_utils import get_commandline_args
from espnet2_pse.data.kaldi_dir import read_table
from espnet2_pse.inference.conditioned import (
    AUDIO,
    ConditionedEnhancer,
    RefinementOptions,
    add_refinement_arguments,
    check_embedding,
    conditioning,
    load_student,
    refinement_from_args,
)
from espnet2_pse.tasks.pse import PSETask

DEFAULT_FS = 16000
ENROLL_NAME = "enroll_ref1"


def get_parser():
    parser = enh_inference.get_parser()
    parser.set_defaults(fs=DEFAULT_FS)
    add_refinement_arguments(parser)
    return parser


def check_keys(data: Sequence[Tuple[str, str, str]], key_file: Optional[str]) -> None:
    """Every data file has an entry for every key to process (those of --key_file or the first file).

    Raises:
        ValueError: naming the first missing key and the file.
    """
    if key_file:
        with open(key_file, encoding="utf-8") as f:
            keys = [line.split(maxsplit=1)[0] for line in f if line.strip()]
    else:
        keys = list(read_table(data[0][0]))
    for path, name, _ in data:
        table = read_table(path)
        missing = [key for key in keys if key not in table]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ValueError(f"{path} ({name}) has no entry for key {missing[0]}{more}")


def conditioned_inference(args: argparse.Namespace, refinement: Optional[RefinementOptions]) -> None:
    """enh_inference's loop for speaker-conditioned models (batch size 1, whole utterances)."""
    if args.batch_size > 1:
        raise NotImplementedError("batch decoding is not implemented")
    if args.segment_size is not None:
        logging.warning("--segment_size is ignored: conditioned models enhance each utterance whole")
    device = "cuda" if args.ngpu >= 1 else "cpu"
    set_all_random_seed(args.seed)
    check_keys(args.data_path_and_name_and_type, args.key_file)
    separate_speech = enh_inference.SeparateSpeech.from_pretrained(
        model_tag=args.model_tag, train_config=args.train_config, model_file=args.model_file,
        inference_config=args.inference_config, ref_channel=args.ref_channel,
        normalize_output_wav=args.normalize_output_wav, device=device, dtype=args.dtype,
        enh_s2t_task=args.enh_s2t_task,
    )
    model = separate_speech.enh_model
    kind = conditioning(model)
    if kind is None:
        raise ValueError(f"the model is not speaker-conditioned: drop {ENROLL_NAME} from the data")
    if kind == AUDIO and refinement is not None:
        raise ValueError("--refine needs a model conditioned on speaker embeddings; this one embeds "
                         "enrollment audio with its internal speaker_encoder")
    student = load_student(args.student_config, args.student_model, device) if refinement is not None else None
    enroll_file = next(path for path, name, _ in args.data_path_and_name_and_type if name == ENROLL_NAME)
    train_args = separate_speech.enh_train_args
    loader = PSETask.build_streaming_iterator(
        args.data_path_and_name_and_type, dtype=args.dtype, batch_size=1, key_file=args.key_file,
        num_workers=args.num_workers, preprocess_fn=PSETask.build_preprocess_fn(train_args, False),
        collate_fn=PSETask.build_collate_fn(train_args, False),
        allow_variable_data_keys=args.allow_variable_data_keys, inference=True,
    )
    output_dir = Path(args.output_dir).expanduser().resolve()
    writer = SoundScpWriter(f"{output_dir}/wavs/1", f"{output_dir}/spk1.scp", format=args.output_format)
    try:
        for keys, batch in tqdm(loader, desc="enhance", unit="utt", file=sys.stderr):
            key = keys[0]
            mix = batch["speech_mix"][0, : int(batch["speech_mix_lengths"][0])].float().cpu().numpy()
            enroll = batch[ENROLL_NAME][0]
            if f"{ENROLL_NAME}_lengths" in batch:
                enroll = enroll[: int(batch[f"{ENROLL_NAME}_lengths"][0])]
            enroll = enroll.float().cpu().numpy()
            what = f"{ENROLL_NAME} of key {key} ({enroll_file})"
            if kind == AUDIO:
                if enroll.ndim != 1:
                    raise ValueError(f"{what}: expected mono enrollment audio, got shape {enroll.shape}")
            else:
                enroll = check_embedding(enroll, model, what)
            enhancer = ConditionedEnhancer(separate_speech, enroll, args.fs, student, refinement)
            wave = enhancer.enhance_array(mix, args.fs)
            if args.normalize_output_wav:  # as enh_inference: peak at 0.9
                wave = wave / max(np.abs(wave).max(), 1e-8) * 0.9
            writer[key] = args.fs, wave
            if refinement is not None:
                stats = enhancer.last_stats
                logging.info("%s: refinement accepted %d/%d embedding updates", key,
                             stats["accepted"], stats["updates"])
    finally:
        writer.close()


def main(cmd: Optional[List[str]] = None) -> None:
    print(get_commandline_args(), file=sys.stderr)
    parser = get_parser()
    args = parser.parse_args(cmd)
    names = [name for _, name, _ in args.data_path_and_name_and_type]
    if ENROLL_NAME not in names:
        if args.refine:
            parser.error(f"--refine needs {ENROLL_NAME} in --data_path_and_name_and_type "
                         "(a speaker-conditioned model and its enrollment)")
        accepted = inspect.signature(enh_inference.inference).parameters  # not ours, not --config
        enh_inference.inference(**{k: v for k, v in vars(args).items() if k in accepted})
        return
    try:
        refinement = refinement_from_args(args)
    except ValueError as err:
        parser.error(str(err))
    if refinement is not None and refinement.session:
        parser.error("--refine_session carries one user's embedding from file to file (enhance); here every "
                     f"key has its own {ENROLL_NAME}")
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        conditioned_inference(args, refinement)
    except (ValueError, OSError) as err:
        sys.exit(f"pse_inference: {err}")


if __name__ == "__main__":
    main()

"""A tiny random MarianMT checkpoint (opus-mt's layout) with a sentencepiece tokenizer trained here.

The directory holds what ``Helsinki-NLP/opus-mt-zh-en`` holds (config, generation config,
source.spm, target.spm, vocab.json, tokenizer_config.json, weights), so MarianTranslator loads it
through the same MarianTokenizer / MarianMTModel calls; the weights are random, so the "English"
it writes is noise, deterministic for a seed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

CORPUS = [
    "一个女人拿着黑色头盔站在灰色背景前。",
    "桌子上有一个杯子和一个碟子。",
    "男人穿着红色的鞋子，在篮球场上打球。",
    "a woman holding a black helmet in front of a grey background.",
    "a cup on a saucer on a wooden table.",
    "the man wears red shoes and plays basketball.",
]


def write_tiny_marian(root: Path, seed: int = 0) -> Path:
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    root.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20),
        model_writer=buf,
        vocab_size=120,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=-1,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        unk_piece="<unk>",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    for name in ("source.spm", "target.spm"):  # one shared vocabulary, as opus-mt's joint models have
        (root / name).write_bytes(buf.getvalue())
    pieces = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    vocab = {"</s>": 0, "<unk>": 1}
    for i in range(pieces.get_piece_size()):
        vocab.setdefault(pieces.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    (root / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    MarianTokenizer(
        str(root / "source.spm"), str(root / "target.spm"), str(root / "vocab.json"), source_lang="zh", target_lang="en"
    ).save_pretrained(root)
    torch.manual_seed(seed)
    config = MarianConfig(
        vocab_size=len(vocab),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=512,
        pad_token_id=vocab["<pad>"],
        eos_token_id=0,
        decoder_start_token_id=vocab["<pad>"],  # as in opus-mt configs
        forced_eos_token_id=0,
    )
    MarianMTModel(config).save_pretrained(root)
    return root

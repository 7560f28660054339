"""Tiny random DNA language models of each family (helpers for tests/model; imported by conftest)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast

from genosae.model.lm import GenosaeCNNConfig, GenosaeCNNForMaskedLM, build_tokenizer

FAMILIES = ["cnn", "nt_fast", "nt_slow", "bpe", "causal"]


def random_dna(n: int, seed: int, *, with_n: bool = False) -> str:
    rng = np.random.default_rng(seed)
    s = rng.choice(list("ACGT"), size=n)
    if with_n and n > 20:
        s[7:10] = "N"
    return "".join(s)


def _save(model, tok, path: Path) -> Path:
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_cnn(path: Path) -> Path:
    torch.manual_seed(0)
    cfg = GenosaeCNNConfig(hidden_size=16, num_hidden_layers=3, kernel_size=3, intermediate_size=24)
    return _save(GenosaeCNNForMaskedLM(cfg), build_tokenizer(), path)


def _nt_vocab() -> list[str]:
    kmers = ["".join(p) for p in itertools.product("ACGT", repeat=6)]
    return ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", *kmers, "A", "C", "G", "T", "N"]


def _esm(vocab_size: int):
    from transformers import EsmConfig, EsmForMaskedLM

    torch.manual_seed(1)
    cfg = EsmConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=32, max_position_embeddings=256, pad_token_id=1, mask_token_id=2,
                    position_embedding_type="rotary", emb_layer_norm_before=False, token_dropout=False)
    return EsmForMaskedLM(cfg)


def make_nt_fast(path: Path) -> Path:
    """Nucleotide-Transformer-style: non-overlapping 6-mers, single bases for the rest, CLS first."""
    vocab = {t: i for i, t in enumerate(_nt_vocab())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[ACGT]{6}|."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="<cls> $A", special_tokens=[("<cls>", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   mask_token="<mask>", cls_token="<cls>", eos_token="<eos>")
    return _save(_esm(len(vocab)), fast, path)


def make_nt_slow(path: Path) -> Path:
    """The real NT tokenizer class (slow ``EsmTokenizer``: no offsets, spans from token strings)."""
    from transformers import EsmTokenizer

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(_nt_vocab()) + "\n")
    tok = EsmTokenizer(str(path / "vocab.txt"), unk_token="<unk>", cls_token="<cls>", pad_token="<pad>",
                       mask_token="<mask>", eos_token="<eos>")
    return _save(_esm(len(_nt_vocab())), tok, path)


def make_bpe(path: Path) -> Path:
    """DNABERT-2-style BERT with a BPE tokenizer trained on random DNA, [CLS] ... [SEP]."""
    from transformers import BertConfig, BertForMaskedLM

    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=specials, initial_alphabet=list("ACGTN"))
    tok.train_from_iterator([random_dna(300, s) + "TATATATA" * 3 for s in range(40)], trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    tok.decoder = decoders.BPEDecoder()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                   pad_token="[PAD]", mask_token="[MASK]")
    torch.manual_seed(2)
    cfg = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=512, pad_token_id=fast.pad_token_id)
    return _save(BertForMaskedLM(cfg), fast, path)


def make_causal(path: Path) -> Path:
    """HyenaDNA/Evo-like: single-base tokens, decoder-only (Llama config), BOS token first."""
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = {"<pad>": 0, "<bos>": 1, "<unk>": 2, "A": 3, "C": 4, "G": 5, "T": 6, "N": 7}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<bos>")
    torch.manual_seed(3)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return _save(LlamaForCausalLM(cfg), fast, path)


def gpn_tokenizer(*, normaliser: bool = True) -> PreTrainedTokenizerFast:
    """GPN's character tokenizer (``songlab/tokenizer-dna-mlm``: a BPE with no merges over lower-case
    ``a c g t`` behind a lower-casing normaliser, ``[PAD] [MASK] [UNK]`` first, no special tokens added).
    ``normaliser=False``: the same vocabulary without the normaliser (upper-case bases are then unknown)."""
    vocab = {"[PAD]": 0, "[MASK]": 1, "[UNK]": 2, "a": 3, "c": 4, "g": 5, "t": 6}
    if normaliser:
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
        tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
    else:
        tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", mask_token="[MASK]", unk_token="[UNK]")


def make_gpn(path: Path, encoder: str = "convnet", *, normaliser: bool = True) -> Path:
    """A tiny GPN (``gpn`` ≥ 0.9 ``GPNForMaskedLM``, one-hot embedding): ``encoder`` ``convnet``,
    ``roformer`` or ``legacy`` (the ``ConvNet`` model type of the first GPN checkpoints)."""
    import contextlib
    import io

    from gpn.legacy import ConvNetConfig, ConvNetForMaskedLM
    from gpn.model import GPNConfig, GPNForMaskedLM

    torch.manual_seed(4)
    with contextlib.redirect_stdout(io.StringIO()):  # GPN prints its dilation schedule
        if encoder == "legacy":
            model = ConvNetForMaskedLM(ConvNetConfig(vocab_size=7, hidden_size=16, n_layers=3, kernel_size=3))
        else:
            model = GPNForMaskedLM(GPNConfig(vocab_size=7, hidden_size=16, num_hidden_layers=3, intermediate_size=24,
                                             encoder=encoder, num_attention_heads=2, first_kernel_size=5,
                                             rest_kernel_size=3, max_position_embeddings=512))
    return _save(model, gpn_tokenizer(normaliser=normaliser), path)


MAKERS = {"cnn": make_cnn, "nt_fast": make_nt_fast, "nt_slow": make_nt_slow, "bpe": make_bpe,
          "causal": make_causal}

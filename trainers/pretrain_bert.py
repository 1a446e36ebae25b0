r"""Pretrains a BERT encoder on plain text with the objective --objective names, and exports it.

    python -m trainers.pretrain_bert                      # bert_tiny on Shakespeare, MLM + NSP
    python -m trainers.pretrain_bert --model=bert_mini --corpus='my_text/*.txt' \
        --strategy=mirrored --train_steps=100000 --batch_size=256
    python -m trainers.pretrain_bert --flagfile=recipes/roberta_mini_shakespeare.flags

Resumes from the latest checkpoint in --model_dir; exports a versioned SavedModel
whose signatures take raw text to --export_dir (default saved_models/<model>).
"""
import os

from absl import flags, logging

from kerasllm.data import (bert_pretraining, bert_pretraining_tfrecords, full_sentences,
                           permutation_lm)
from kerasllm.errors import DataError
from kerasllm.export.bert_signatures import bert_signatures
from kerasllm.models import BertEncoder, BertPretrainer, ElectraPretrainer, PermutationLanguageModel
from kerasllm.models.bert import electra
from kerasllm.pretrained.model_dir import describe_model_dir
from kerasllm.tokenizers import wordpiece_vocab
from kerasllm.tokenizers.wordpiece import WordPieceTokenizer
from kerasllm.training.checkpoints import ensure_writable
from kerasllm.training.loop import train
from kerasllm.training.strategy import create_strategy, is_chief
from trainers import common, shared_flags

FAMILY = "bert"
OBJECTIVES = {
    "mlm_nsp": "BERT's: masked LM + next-sentence prediction on sentence pairs",
    "mlm": "RoBERTa's: masked LM alone on windows of whole sentences packed across "
           "documents (FULL-SENTENCES), no segment B",
    "electra": "ELECTRA's: replaced-token detection on every token of those windows, "
               "the replacements drawn from a small masked-LM generator (--generator_size) "
               "sharing the token table; the encoder exported is the discriminator",
    "plm": "XLNet's: permutation LM on those windows, two-stream attention predicting "
           "the last 1/--partial_prediction of each factorisation order (XLNet's relative "
           "positions and segment recurrence left out)",
}


def define_corpus_flags(fv):
    """The flags that say which text to read and how to tokenize it (shared with
    make_pretraining_data)."""
    shared_flags.define_corpus_flags(fv)
    flags.DEFINE_string("vocab_file", None,
                        "WordPiece vocab.txt to use. Default: <model_dir>/vocab.txt, learned "
                        "from the corpus on the first run.", flag_values=fv)
    flags.DEFINE_integer("max_seq_length", 128,
                         "Tokens per example, [CLS] and [SEP] included.", lower_bound=8,
                         flag_values=fv)


def define_flags(fv):
    shared_flags.define_model_flags(fv, FAMILY, "bert_tiny")
    flags.DEFINE_enum("objective", "mlm_nsp", list(OBJECTIVES), "The pretraining objective: " +
                      "; ".join(f"{name}, {text}" for name, text in OBJECTIVES.items()) + ".",
                      flag_values=fv)
    define_corpus_flags(fv)
    flags.DEFINE_integer("vocab_size", 8000, "Size of a vocabulary learned from the corpus.",
                         lower_bound=100, flag_values=fv)
    flags.DEFINE_integer("max_predictions_per_seq", 20, "Most masked tokens per example.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_boolean("whole_word_masking", False,
                         "Mask all word pieces of a word together.", flag_values=fv)
    flags.DEFINE_float("generator_size", electra.DEFAULT_GENERATOR_SIZE,
                       "electra: the generator's width as a fraction of the encoder's.",
                       lower_bound=0.01, upper_bound=1.0, flag_values=fv)
    flags.DEFINE_float("discriminator_weight", electra.DEFAULT_DISCRIMINATOR_WEIGHT,
                       "electra: the weight of replaced-token detection's loss against "
                       "the generator's.", lower_bound=1e-6, flag_values=fv)
    flags.DEFINE_integer("partial_prediction", permutation_lm.DEFAULT_PARTIAL_PREDICTION,
                         "plm: predict the last 1/K of each factorisation order (K).",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_string("train_tfrecords", None,
                        "Glob of TFRecords of tokenized sentence pairs (from "
                        "trainers.make_pretraining_data) to train on instead of tokenizing "
                        "--corpus; needs the --vocab_file they were written with.",
                        flag_values=fv)
    shared_flags.define_export_flags(fv, "<model>")
    shared_flags.define_training_flags(fv, model_dir="model_dirs/bert_pretraining",
                                       train_steps=1000, batch_size=32, learning_rate=1e-3)


def load_or_learn_vocab(fv, documents, model_dir):
    """--vocab_file, else the vocab saved with the checkpoints (so a resumed run
    keeps its token ids), else one learned from the corpus (run() saves it there)."""
    if fv.vocab_file:
        return wordpiece_vocab.load_vocab(fv.vocab_file)
    saved = os.path.join(model_dir, wordpiece_vocab.VOCAB_FILE)
    if os.path.exists(saved):
        return wordpiece_vocab.load_vocab(saved)
    logging.info("learning a %d-token WordPiece vocabulary from the corpus", fv.vocab_size)
    return wordpiece_vocab.learn_wordpiece_vocab(documents, fv.vocab_size)


def pretraining_task(fv, model_config):
    """The task --objective trains, around a fresh encoder of `model_config`."""
    encoder = BertEncoder(model_config)
    if fv.objective == "electra":
        return ElectraPretrainer(encoder, generator_size=fv.generator_size,
                                 discriminator_weight=fv.discriminator_weight)
    if fv.objective == "plm":
        return PermutationLanguageModel(encoder)
    return BertPretrainer(encoder, next_sentence_prediction=fv.objective == "mlm_nsp")


def corpus_dataset_fn(fv, documents, tokenizer, settings):
    """The training batches --objective reads from the corpus."""
    if fv.objective == "plm":
        return permutation_lm.pretraining_dataset_fn(
            documents, tokenizer, global_batch_size=settings["global_batch_size"],
            max_seq_length=settings["max_seq_length"], seed=settings["seed"],
            partial_prediction=fv.partial_prediction)
    examples = bert_pretraining if fv.objective == "mlm_nsp" else full_sentences
    return examples.pretraining_dataset_fn(documents, tokenizer, **settings)


def run(fv):
    model_config = shared_flags.model_config_from_flags(fv, FAMILY, "pretrain_bert")
    max_seq_length = common.sequence_length(fv, model_config, fv.model)
    export_root = common.export_root(fv, fv.model)
    train_config = shared_flags.train_config_from_flags(fv)
    common.check_run_dir(train_config.model_dir, FAMILY, "pretrain_bert")
    strategy = create_strategy(fv.strategy, tpu=fv.tpu)
    ensure_writable(train_config.model_dir)

    example_settings = dict(
        max_seq_length=max_seq_length, global_batch_size=train_config.micro_batch_size,
        max_predictions_per_seq=fv.max_predictions_per_seq,
        whole_word_masking=fv.whole_word_masking, seed=train_config.seed)
    if fv.train_tfrecords:
        if fv.objective != "mlm_nsp":
            raise DataError(f"--train_tfrecords hold sentence pairs for --objective=mlm_nsp; "
                            f"--objective={fv.objective} reads --corpus")
        if not fv.vocab_file:
            raise DataError("--train_tfrecords needs the --vocab_file the records were "
                            "written with")
        tokenizer = WordPieceTokenizer(wordpiece_vocab.load_vocab(fv.vocab_file))
        dataset_fn = bert_pretraining_tfrecords.tfrecords_dataset_fn(
            fv.train_tfrecords, tokenizer, **example_settings)
    else:
        documents = common.read_corpus(fv)
        tokenizer = WordPieceTokenizer(
            load_or_learn_vocab(fv, documents, train_config.model_dir))
        dataset_fn = corpus_dataset_fn(fv, documents, tokenizer, example_settings)
    model_config = model_config.replace(vocab_size=tokenizer.vocab_size)
    if is_chief(strategy):
        # So finetune_bert --init_checkpoint=<this model_dir> can rebuild the encoder.
        describe_model_dir(train_config.model_dir, FAMILY, model_config, tokenizer)
    result = train(lambda: pretraining_task(fv, model_config), dataset_fn, train_config,
                   strategy)
    common.log_finished(result)
    if not common.export_wanted(fv, result, strategy):
        return
    task = common.quantize_for_export(fv, result.task)
    common.export(
        fv, export_root,
        # fill_mask where the encoder itself was trained with a masked-LM head.
        bert_signatures(task.backbone, tokenizer, max_seq_length,
                        mlm_head=getattr(task, "mlm_head", None)),
        [task, tokenizer],
        {"family": FAMILY, "model": fv.model, "config": model_config.to_dict(),
         "tokenizer": tokenizer.settings(), "max_seq_length": max_seq_length,
         **common.prepare_export(None, result)})


if __name__ == "__main__":
    common.main("pretrain_bert", define_flags, run)

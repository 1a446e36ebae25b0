"""Small fabricated Hugging Face BERT checkpoint directories (config.json,
model.safetensors, vocab.txt) for tests that load or fine-tune one quickly."""
import json
import os

import numpy as np
from safetensors.numpy import save_file

TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on",
              "mat", "##s", "."]
TINY_CONFIG = {"model_type": "bert", "architectures": ["BertModel"], "hidden_size": 8,
               "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16,
               "vocab_size": len(TINY_VOCAB), "max_position_embeddings": 16,
               "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12}


def tiny_tensors(config=TINY_CONFIG, seed=0):
    """Random weights under Hugging Face BertModel names, pooler included."""
    rng = np.random.default_rng(seed)
    hidden, ffn = config["hidden_size"], config["intermediate_size"]
    shapes = {
        "embeddings.word_embeddings.weight": (config["vocab_size"], hidden),
        "embeddings.position_embeddings.weight": (config["max_position_embeddings"], hidden),
        "embeddings.token_type_embeddings.weight": (config["type_vocab_size"], hidden),
        "pooler.dense.weight": (hidden, hidden), "pooler.dense.bias": (hidden,),
    }
    norms = ["embeddings.LayerNorm"]
    for i in range(config["num_hidden_layers"]):
        layer = f"encoder.layer.{i}"
        for name, out_size, in_size in [
                ("attention.self.query", hidden, hidden), ("attention.self.key", hidden, hidden),
                ("attention.self.value", hidden, hidden),
                ("attention.output.dense", hidden, hidden), ("intermediate.dense", ffn, hidden),
                ("output.dense", hidden, ffn)]:
            shapes[f"{layer}.{name}.weight"] = (out_size, in_size)
            shapes[f"{layer}.{name}.bias"] = (out_size,)
        norms += [f"{layer}.attention.output.LayerNorm", f"{layer}.output.LayerNorm"]
    tensors = {name: rng.normal(0, 0.5, shape).astype(np.float32)
               for name, shape in shapes.items()}
    for norm in norms:
        tensors[norm + ".weight"] = rng.normal(1, 0.1, hidden).astype(np.float32)
        tensors[norm + ".bias"] = rng.normal(0, 0.1, hidden).astype(np.float32)
    return tensors


def write_checkpoint(directory, config=TINY_CONFIG, tensors=None, vocab=TINY_VOCAB,
                     tokenizer_config=None):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    save_file(tiny_tensors() if tensors is None else tensors,
              os.path.join(directory, "model.safetensors"))
    with open(os.path.join(directory, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    if tokenizer_config is not None:
        with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
            json.dump(tokenizer_config, f)
    return str(directory)

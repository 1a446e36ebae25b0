"""The weight plan of a Llama-style GptCausalLM, whatever the checkpoint format calls
its tensors: Hugging Face safetensors and GGUF files hold the same weights, [out, in]
linear matrices and norm scales, under different names."""
from kerasllm.convert.checkpoint_mapping import Assignment

# Per-layer roles, in order; each format names them (see HF_NAMES, GGUF_NAMES).
LAYER_ROLES = ("attention_norm", "query", "key", "value", "attention_output", "ffn_norm",
               "gate", "up", "down")
HF_NAMES = {
    "embedding": "embed_tokens.weight", "final_norm": "norm.weight",
    "attention_norm": "layers.{i}.input_layernorm.weight",
    "query": "layers.{i}.self_attn.q_proj.weight", "key": "layers.{i}.self_attn.k_proj.weight",
    "value": "layers.{i}.self_attn.v_proj.weight",
    "attention_output": "layers.{i}.self_attn.o_proj.weight",
    "ffn_norm": "layers.{i}.post_attention_layernorm.weight",
    "gate": "layers.{i}.mlp.gate_proj.weight", "up": "layers.{i}.mlp.up_proj.weight",
    "down": "layers.{i}.mlp.down_proj.weight",
}
GGUF_NAMES = {
    "embedding": "token_embd.weight", "final_norm": "output_norm.weight",
    "attention_norm": "blk.{i}.attn_norm.weight", "query": "blk.{i}.attn_q.weight",
    "key": "blk.{i}.attn_k.weight", "value": "blk.{i}.attn_v.weight",
    "attention_output": "blk.{i}.attn_output.weight", "ffn_norm": "blk.{i}.ffn_norm.weight",
    "gate": "blk.{i}.ffn_gate.weight", "up": "blk.{i}.ffn_up.weight",
    "down": "blk.{i}.ffn_down.weight",
}


def llama_plan(model, names):
    """Every backbone weight of the Llama-style `model` with the tensor of `names`
    ({role: name, "{i}" standing for the layer}) that fills it; the output
    projection, which formats store differently, is left to the caller."""
    backbone = model.backbone
    config = backbone.config
    hidden, ffn = config.hidden_size, config.intermediate_size
    q_size = config.num_heads * config.head_size
    kv_size = config.num_key_value_heads * config.head_size
    plan = [Assignment(backbone.token_embedding.embeddings, names["embedding"],
                       (config.vocab_size, hidden))]
    for i, block in enumerate(backbone.blocks):
        attention, feed_forward = block.self_attention, block.feed_forward
        weights = {
            "attention_norm": (block.self_attention_norm.scale, (hidden,)),
            "query": (attention.query_dense.kernel, (q_size, hidden)),
            "key": (attention.key_dense.kernel, (kv_size, hidden)),
            "value": (attention.value_dense.kernel, (kv_size, hidden)),
            "attention_output": (attention.output_dense.kernel, (hidden, q_size)),
            "ffn_norm": (block.feed_forward_norm.scale, (hidden,)),
            "gate": (feed_forward.gate_dense.kernel, (ffn, hidden)),
            "up": (feed_forward.up_dense.kernel, (ffn, hidden)),
            "down": (feed_forward.down_dense.kernel, (hidden, ffn)),
        }
        for role in LAYER_ROLES:
            variable, shape = weights[role]
            # Linear weights are [out, in]; Keras kernels [in, out].
            plan.append(Assignment(variable, names[role].format(i=i), shape,
                                   transpose=len(shape) == 2))
    plan.append(Assignment(backbone.final_norm.scale, names["final_norm"], (hidden,)))
    return plan

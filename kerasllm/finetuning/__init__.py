"""Fine-tuning a pretrained BERT encoder: one task object per kind of task (classify
text, tag words, answer questions) holding its data, model, evaluation and export,
so the trainer (trainers/finetune_bert.py) stays the same for all of them."""

"""Every held-out score, and the one mechanism that keeps the best weights.

    validation.py      Validation: train()'s on_evaluate hook; scores, history, TensorBoard,
                       best weights (best_weights.py stores them)
    language_model.py  held-out loss and perplexity (GPT, seq2seq)
    translation.py     BLEU and chrF of greedy or beam translations
    labels.py          accuracy and macro-F1 of classifier and tagger labels
    answers.py         SQuAD exact match and F1 of span-QA answers
    scores.py          the NumPy score functions beneath labels.py and answers.py
"""

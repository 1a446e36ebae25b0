"""The task model every family's heads are built on: a backbone, heads, a loss, and
the tokenizer that turns raw text into its inputs."""
import weakref

import keras
import tensorflow as tf

from kerasllm.errors import KerasLLMError
from kerasllm.models import quantization
from kerasllm.raw_text import python_value, unbatched
from kerasllm.training.optimizer import PreReducedAdamW

# {task: {settings: its serving functions}}: outside the model, so neither Keras
# nor tf.Module tracking (checkpoints, SavedModels) sees them.
_TEXT_FUNCTIONS = weakref.WeakKeyDictionary()
# Batches per `fit` call when raw text comes without a batch size (Keras' default).
DEFAULT_BATCH_SIZE = 32


class NoTokenizerError(KerasLLMError, ValueError):
    """A raw-text method of a task that carries no tokenizer."""


class TaskModel(keras.Model):
    """Base of the task models (BERT pretrainer and classifiers, and the models of
    every other family): a `backbone` (a `kerasllm.models.backbone.Backbone`) with
    heads on top, and optionally the `tokenizer` its inputs are made with.

    This is the contract `kerasllm.training` relies on: `build_for_inputs()`
    creates every weight, `compute_loss_and_metrics(batch, training)` returns
    (float32 loss scalar, {name: float32 scalar}), and `backbone.layer_depth(v)`
    and `backbone.num_layers` place each weight for layer-wise learning rates
    (heads sit above the backbone).

    The same loss trains it through Keras: `compile(optimizer=...)` is enough, and
    `fit`/`evaluate` take batches of model inputs (dicts, as the data modules make
    them) or raw text, which `preprocess` turns into such batches inside the
    tf.data pipeline. Keras' `fit` breaks under MultiWorkerMirroredStrategy
    (keras-team/keras#20585): there, train with kerasllm.training.loop.train.

    `model.save("x.keras")` keeps the tokenizer: its settings go into the config
    and its files into the archive's assets.

    `fit` on a task never compiled compiles it first with
    Adam(default_learning_rate), a fine-tuning rate.

    Subclasses create their heads with `head_dense`, put their own constructor
    arguments in `task_config()`, turn raw text into batches in `preprocess` and,
    when their inputs need more than the backbone's, extend `dummy_inputs`.
    """

    # The rate `fit` uses on a task never compiled: a fine-tuning rate (keras-hub's
    # defaults); compile yourself to train from scratch.
    default_learning_rate = 2e-5

    def __init__(self, backbone, tokenizer=None, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self._tokenizer_settings = None
        self.tokenizer = tokenizer
        self._set_task_metrics({})

    @property
    def tokenizer(self):
        """The kerasllm.tokenizers.Tokenizer of this task's inputs, or None."""
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer):
        if isinstance(tokenizer, dict):  # settings from a config; files come in load_assets
            self._tokenizer_settings, tokenizer = tokenizer, None
        elif tokenizer is not None:
            self._tokenizer_settings = tokenizer.settings()
            if tokenizer.vocab_size > self.backbone.config.vocab_size:
                raise KerasLLMError(
                    f"the tokenizer has {tokenizer.vocab_size} tokens but the model's "
                    f"vocab_size is {self.backbone.config.vocab_size}: a tokenizer of "
                    "another model")
        # Not tracked as a dependency: checkpoints hold weights only, as before.
        object.__setattr__(self, "_tokenizer", tokenizer)
        _TEXT_FUNCTIONS.pop(self, None)

    def needs_tokenizer(self, method):
        """The tokenizer; NoTokenizerError naming `method` when there is none."""
        if self._tokenizer is None:
            raise NoTokenizerError(
                f"{type(self).__name__}.{method} reads raw text and this model has no "
                "tokenizer: load it with from_preset(<a pretrained name or directory>) or "
                "pass tokenizer= when building it")
        return self._tokenizer

    def head_dense(self, units, name, **kwargs):
        """A Dense head layer initialised as the backbone's own weights are."""
        return keras.layers.Dense(
            units, kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=self.backbone.config.initializer_range),
            dtype=self.dtype_policy, name=name, **kwargs)

    def dummy_inputs(self, seq_length):
        """A one-example batch of `seq_length` tokens that `call` accepts."""
        return self.backbone.dummy_inputs(seq_length)

    def build_for_inputs(self, seq_length=8):
        """Creates every weight by running a dummy batch of `seq_length` tokens."""
        self(self.dummy_inputs(seq_length))
        return self

    def compute_loss_and_metrics(self, batch, training=False):
        """(loss, {metric name: value}) for one batch: float32 scalars, batch means."""
        raise NotImplementedError

    # --- presets -------------------------------------------------------------------------

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """This task from a preset (see kerasllm.pretrained.presets: a registry name, a
        packaged name such as "minilm" or "smollm2", a Hugging Face directory, a GGUF
        file, a kerasllm model_dir or a saved preset directory), with the preset's
        tokenizer and every weight it holds for this task (the backbone's always;
        heads when it holds a task of this kind). `kwargs` are the task's own
        arguments (e.g. num_classes=2), and tokenizer= to replace the preset's (a
        registry name's fresh model is then sized to its vocabulary).

        Raises:
          kerasllm.pretrained.presets.PresetError: an unknown name or a model of
            another family; other KerasLLMErrors when the source cannot be read.
        """
        from kerasllm.pretrained import presets  # presets import the model families
        loaded = presets.load_preset(preset)
        presets.check_family(loaded, cls)
        tokenizer = kwargs.pop("tokenizer", None) or loaded.tokenizer
        loaded = presets.with_vocabulary_of(loaded, tokenizer)
        kwargs = {**cls.preset_arguments(loaded), **kwargs}
        if isinstance(loaded.task, cls):
            task = cls(loaded.backbone, **{**loaded.task.task_config(), **kwargs,
                                           "tokenizer": None}).build_for_inputs()
            held = loaded.task.get_weights()
            if [w.shape for w in held] == [tuple(w.shape) for w in task.weights]:
                task.set_weights(held)
        else:
            task = cls(loaded.backbone, **kwargs).build_for_inputs()
            if loaded.restore is not None:
                loaded.restore(task)
        task.tokenizer = tokenizer
        return task

    @classmethod
    def preset_arguments(cls, preset):
        """Constructor arguments this task takes from a loaded Preset besides its
        weights and tokenizer (a GPT's chat template); the caller's win."""
        return {}

    def save_to_preset(self, directory):
        """Writes this task, its weights and tokenizer as a preset directory that
        from_preset reads back (see kerasllm.pretrained.presets.save_preset)."""
        from kerasllm.pretrained import presets
        return presets.save_preset(self, directory)

    def save_to_hf(self, directory, dtype="f32", overwrite=False):
        """Writes this task and its tokenizer as a Hugging Face checkpoint directory
        (GPT2LMHeadModel, LlamaForCausalLM, BertForSequenceClassification; see
        kerasllm.convert.hf_export)."""
        from kerasllm.convert.hf_export import save_to_hf
        return save_to_hf(self, directory, dtype=dtype, overwrite=overwrite)

    # --- LoRA -----------------------------------------------------------------------------

    def enable_lora(self, rank, alpha=None, dropout=0.0, targets="attention",
                    train_norms=False):
        """LoRA on the backbone (see kerasllm.models.lora): adapters of `rank` on the
        `targets` layers; every other backbone weight is frozen, and so are the
        task's pretrained heads, while heads a fine-tuning run adds (a classifier's)
        train in full. Returns the LoraSettings."""
        if not self.built:
            self.build_for_inputs()
        settings = self.backbone.enable_lora(rank, alpha=alpha, dropout=dropout,
                                             targets=targets, train_norms=train_norms)
        for weight in self.pretrained_head_weights():
            weight.trainable = False
        return settings

    def merge_lora(self):
        """Folds the adapters into the weights (see Backbone.merge_lora); what an
        export of a LoRA-tuned task serves: no extra matmuls, the same outputs."""
        self.backbone.merge_lora()
        for weight in self.pretrained_head_weights():
            weight.trainable = True

    def pretrained_head_weights(self):
        """The weights of heads a pretrained checkpoint holds (frozen under LoRA):
        none here; a language model's vocabulary projection."""
        return []

    # --- raw text in, text out: the serving signatures ---------------------------------

    def serving_signatures(self, **settings):
        """{signature name: tf.function} on raw text, serving_default included: what
        `export` writes and the Python methods (generate, classify, ...) call."""
        raise NotImplementedError

    def export_options(self):
        """Keyword arguments of kerasllm.export.saved_model.export_saved_model that
        this task's exports use (warmup inputs, batching parameters)."""
        return {}

    def text_functions(self, **settings):
        """serving_signatures(**settings), built once per settings and tokenizer: the
        Python methods run the exported functions themselves."""
        functions = _TEXT_FUNCTIONS.setdefault(self, {})
        key = tuple(sorted(settings.items()))
        if key not in functions:
            functions[key] = self.serving_signatures(**settings)
        return functions[key]

    def run_text_function(self, name, inputs, single, **settings):
        """Runs text_functions(**settings)[name] on `inputs` ({input name: tensor}) and
        returns its outputs as Python values (see kerasllm.raw_text), the
        first row alone when the caller passed a single string."""
        outputs = self.text_functions(**settings)[name](**inputs)
        return unbatched({key: python_value(value) for key, value in outputs.items()},
                         single)

    def export(self, export_root, version=None, metadata=None, check=True, quantize=None,
               **settings):
        """Writes the serving SavedModel of `serving_signatures(**settings)` (the one
        the trainers write) as `<export_root>/<version>/`, checked as TF Serving
        loads it, atomically; returns its path. `metadata` (JSON-able) goes to
        assets.extra/kerasllm.json beside the config and tokenizer settings.
        `quantize="int8"` exports int8 kernels (see kerasllm.models.quantization)
        from a quantized copy: this model stays as it is."""
        from kerasllm.export.saved_model import export_saved_model  # export imports models
        tokenizer = self.needs_tokenizer("export")
        served = self if quantization.check_mode(quantize) is None else (
            quantization.quantized_copy(self, quantize))
        return export_saved_model(
            export_root, served.serving_signatures(**settings), [served, tokenizer],
            version=version, check=check,
            metadata={"config": self.backbone.config.to_dict(),
                      "tokenizer": tokenizer.settings(), "task": type(self).__name__,
                      **({"quantize": quantize} if quantize else {}),
                      **settings, **(metadata or {})},
            **served.export_options())

    # --- raw text -> batches ---------------------------------------------------------

    def preprocess(self, x, y=None):
        """Raw text (string tensors [B], and y [B] where the task has targets) -> the
        batch dict `compute_loss_and_metrics` takes; graph ops only (runs in tf.data)."""
        raise NotImplementedError(f"{type(self).__name__} does not train on raw text yet; "
                                  "pass batches of model inputs")

    def text_dataset(self, x, y=None, batch_size=None, shuffle=False, seed=None):
        """`x` (and `y`) as a tf.data.Dataset of batches `compute_loss_and_metrics`
        takes: a dataset of dicts passes through; a dataset of raw-text batches, or
        Python lists / NumPy arrays of strings (with their targets `y`), go through
        `preprocess`, `batch_size` rows a batch (default 32)."""
        if isinstance(x, tf.data.Dataset):
            if isinstance(x.element_spec, dict):
                return x
            self.needs_tokenizer("fit")
            return x.map(self._preprocess_element, num_parallel_calls=tf.data.AUTOTUNE)
        self.needs_tokenizer("fit")
        columns = x if y is None else (x, y)
        rows = len(x[0]) if isinstance(x, tuple) else len(x)
        if rows == 0:
            raise KerasLLMError("no examples: pass at least one text")
        dataset = tf.data.Dataset.from_tensor_slices(columns)
        if shuffle:
            dataset = dataset.shuffle(rows, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.batch(batch_size or DEFAULT_BATCH_SIZE)
        return dataset.map(self._preprocess_element,
                           num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    # Not converted by AutoGraph (preprocess has no tensor-dependent Python control
    # flow): a named error raised while tracing then reaches the caller as itself.
    @tf.autograph.experimental.do_not_convert
    def _preprocess_element(self, *element):
        if len(element) == 1 and isinstance(element[0], tuple):
            element = element[0]
        return self.preprocess(*element)

    # --- Keras training ----------------------------------------------------------------

    def compile(self, optimizer="adam", **kwargs):
        """Keras' compile; the loss and metrics are the task's own (pass no `loss`)."""
        if kwargs.get("loss") is not None:
            raise KerasLLMError(f"{type(self).__name__} trains with its own masked loss "
                                "(compute_loss_and_metrics); compile without loss=")
        super().compile(optimizer=optimizer, **kwargs)
        self._set_task_metrics({})

    def compile_from_config(self, config):
        """Keras loading: compiles as the saved model was (the loss is the task's)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.optimizer is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The task's loss on batch `x` (compute_loss_and_metrics; `y`, `y_pred` and
        `sample_weight` are not used: the batch holds the targets)."""
        return self.compute_loss_and_metrics(x, training=training)[0]

    def _update_metrics(self, loss, metrics, batch):
        """Logs: running means of the loss and of each metric that has a tracker (fit
        and evaluate make them), this batch's value of the others (train_on_batch)."""
        rows = tf.shape(next(iter(batch.values())))[0]
        self._loss_tracker.update_state(loss, sample_weight=rows)
        logs = {"loss": self._loss_tracker.result()}
        for name, value in metrics.items():
            tracker = self._task_metrics.get(name)
            if tracker is None:
                logs[name] = value
            else:
                tracker.update_state(value, sample_weight=rows)
                logs[name] = tracker.result()
        return logs

    @property
    def metrics(self):
        return [tracker for tracker in (getattr(self, "_loss_tracker", None),)
                if tracker is not None] + list(getattr(self, "_task_metrics", {}).values())

    def train_step(self, data):
        batch = _batch_of(data)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss, metrics = self.compute_loss_and_metrics(batch, training=True)
            # Gradients are summed over replicas: each contributes its share of the mean.
            scaled = self.optimizer.scale_loss(loss / replicas)
        variables = self.trainable_variables
        # Embedding gradients arrive as IndexedSlices: made dense once here, as the
        # training loop does, so the norm clipping sees is the loop's (rows of a
        # repeated token summed first) and the optimizer densifies no table again.
        grads = [None if g is None else tf.convert_to_tensor(g)
                 for g in tape.gradient(scaled, variables)]
        inner = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        if replicas > 1 and isinstance(inner, PreReducedAdamW):
            # kerasllm's optimizer leaves the cross-replica sum to its caller.
            grads = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, grads)
        self.optimizer.apply_gradients(zip(grads, variables))
        return self._update_metrics(loss, metrics, batch)

    def test_step(self, data):
        batch = _batch_of(data)
        loss, metrics = self.compute_loss_and_metrics(batch, training=False)
        return self._update_metrics(loss, metrics, batch)

    def _ensure_metrics(self, dataset):
        """Mean trackers for the task's metrics, named from one eager batch's."""
        if self._task_metrics:
            return
        batch = next(iter(dataset.take(1)))
        _, metrics = self.compute_loss_and_metrics(_batch_of(batch), training=False)
        with self.distribute_strategy.scope():
            self._set_task_metrics({name: keras.metrics.Mean(name=name)
                                    for name in sorted(metrics)})

    def _set_task_metrics(self, trackers):
        # Outside Keras' state tracking, which refuses new state once the model is
        # built: trackers only count, and `metrics` lists them for Keras' resets.
        object.__setattr__(self, "_task_metrics", trackers)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, validation_data=None,
            shuffle=True, **kwargs):
        """Keras' fit on batches of model inputs or on raw text (see `text_dataset`):
        strings for a language model, (sources, targets) for seq2seq, texts and
        labels for a classifier. Not under MultiWorkerMirroredStrategy: use
        kerasllm.training.loop.train there."""
        self._ready_to_run()
        dataset = self.text_dataset(x, y, batch_size, shuffle=shuffle)
        if validation_data is not None:
            validation_data = self.text_dataset(
                *(validation_data if isinstance(validation_data, tuple)
                  else (validation_data,)), batch_size=batch_size)
        self._ensure_metrics(dataset)
        return super().fit(dataset, epochs=epochs, validation_data=validation_data,
                           shuffle=False, **kwargs)

    def _ready_to_run(self):
        _check_strategy(self.distribute_strategy)
        if not self.compiled:
            self.compile(optimizer=keras.optimizers.Adam(self.default_learning_rate))

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        """Keras' evaluate on batches of model inputs or raw text (see `fit`)."""
        self._ready_to_run()
        dataset = self.text_dataset(x, y, batch_size)
        self._ensure_metrics(dataset)
        return super().evaluate(dataset, **kwargs)

    # --- saving ---------------------------------------------------------------------------

    def task_config(self):
        """The subclass's constructor arguments besides the backbone."""
        return {}

    def get_config(self):
        return {"backbone": keras.saving.serialize_keras_object(self.backbone),
                "tokenizer": self._tokenizer_settings,
                **self.task_config(), "name": self.name,
                "dtype": keras.dtype_policies.serialize(self.dtype_policy)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)

    def save_assets(self, directory):
        """Keras saving: the tokenizer's files go into the .keras archive."""
        if self._tokenizer is not None:
            self._tokenizer.save(directory)

    def load_assets(self, directory):
        """Keras loading: rebuilds the tokenizer the config names from its files."""
        from kerasllm.tokenizers import load_tokenizer  # tokenizers import no models
        if self._tokenizer_settings is not None:
            self.tokenizer = load_tokenizer(directory, self._tokenizer_settings)


def _batch_of(data):
    """The batch dict of what Keras' data adapter hands a step."""
    if isinstance(data, tuple):
        data = data[0]
    if not isinstance(data, dict):
        raise KerasLLMError("a training batch is a dict of model inputs (or raw text through "
                            f"fit); got {type(data).__name__}")
    return data


def _check_strategy(strategy):
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        raise KerasLLMError(
            "Keras' fit does not work under MultiWorkerMirroredStrategy "
            "(keras-team/keras#20585); train with kerasllm.training.loop.train, as "
            "the trainers do")

"""TF Serving's batching parameters as a protocol buffer, written as the text files the
server reads (`--batching_parameters_file`, and per version
`assets.extra/batching_params.pbtxt` with `--enable_per_model_batching_parameters`).

The `tensorflow.serving.BatchingParameters` message is not part of the
tensorflow-serving-api package, so the nine fields kerasllm sets are declared here
under the server's own package, names, numbers and types (those of
tensorflow_serving/servables/tensorflow/session_bundle_config.proto at 2.20.0): the text
format then comes from protobuf itself, never from a string template.
"""
import dataclasses
import os

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf import wrappers_pb2

BATCHING_FILE = "batching.config"
PER_VERSION_FILE = os.path.join("assets.extra", "batching_params.pbtxt")


def _batching_parameters_class():
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    message = file.message_type.add(name="BatchingParameters")
    field = descriptor_pb2.FieldDescriptorProto
    for number, name, kind, type_name, label in [
            (1, "max_batch_size", field.TYPE_MESSAGE, ".google.protobuf.Int64Value", None),
            (2, "batch_timeout_micros", field.TYPE_MESSAGE, ".google.protobuf.Int64Value",
             None),
            (3, "max_enqueued_batches", field.TYPE_MESSAGE, ".google.protobuf.Int64Value",
             None),
            (4, "num_batch_threads", field.TYPE_MESSAGE, ".google.protobuf.Int64Value", None),
            (5, "thread_pool_name", field.TYPE_MESSAGE, ".google.protobuf.StringValue", None),
            (6, "allowed_batch_sizes", field.TYPE_INT64, None, field.LABEL_REPEATED),
            (7, "pad_variable_length_inputs", field.TYPE_BOOL, None, None),
            (8, "enable_large_batch_splitting", field.TYPE_MESSAGE,
             ".google.protobuf.BoolValue", None),
            (9, "max_execution_batch_size", field.TYPE_MESSAGE, ".google.protobuf.Int64Value",
             None)]:
        message.field.add(name=name, number=number, type=kind, type_name=type_name,
                          label=label or field.LABEL_OPTIONAL)
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


BatchingParameters = _batching_parameters_class()


@dataclasses.dataclass(frozen=True)
class Batching:
    """How the server groups requests into one run of the model.

    Defaults suit these models on CPU: requests wait at most 2 ms for company,
    batches grow to 32 rows (padded up to the next allowed size, so the model sees
    few distinct shapes; they match the sizes the warmup requests use), one
    batch per core runs at a time, and at most 64 batches queue before the
    server answers UNAVAILABLE.
    """

    max_batch_size: int = 32
    batch_timeout_micros: int = 2000
    max_enqueued_batches: int = 64
    num_batch_threads: int = 2
    allowed_batch_sizes: tuple = (1, 8, 32)
    # Every kerasllm signature input is [batch] (raw text, per-row settings), so
    # requests never need padding to a common length.
    pad_variable_length_inputs: bool = False
    # Large batch splitting: with it, max_batch_size is the largest *request* the
    # server accepts, and a request (or the part of it that does not fit the open
    # batch) is cut into batches of at most max_execution_batch_size rows, which must
    # then be the last allowed size (the server refuses the model otherwise). Off by
    # default: a 32-row encoder batch is one short forward pass.
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None

    def __post_init__(self):
        largest = self.max_execution_batch_size if self.enable_large_batch_splitting \
            else self.max_batch_size
        if self.enable_large_batch_splitting and not (
                largest and largest <= self.max_batch_size):
            raise ValueError("large batch splitting needs max_execution_batch_size <= "
                             "max_batch_size")
        if self.allowed_batch_sizes and self.allowed_batch_sizes[-1] != largest:
            raise ValueError(f"the last allowed batch size must be {largest} (TF Serving "
                             "refuses the model otherwise)")

    def to_proto(self):
        # Wrapper fields as dicts: the message lives in its own descriptor pool.
        proto = BatchingParameters(
            max_batch_size={"value": self.max_batch_size},
            batch_timeout_micros={"value": self.batch_timeout_micros},
            max_enqueued_batches={"value": self.max_enqueued_batches},
            num_batch_threads={"value": self.num_batch_threads},
            allowed_batch_sizes=list(self.allowed_batch_sizes),
            pad_variable_length_inputs=self.pad_variable_length_inputs)
        if self.enable_large_batch_splitting:
            proto.enable_large_batch_splitting.value = True
            proto.max_execution_batch_size.value = self.max_execution_batch_size
        return proto

    def to_text(self):
        return text_format.MessageToString(self.to_proto())


# A request of a decoding signature (generation, translation) runs a loop of up to
# its most new tokens, and a batch holds its rows until the longest one ends, so
# batches that run stay small (8 rows; the warmed sizes are 1 and 8) and may wait a
# little longer for company. Requests may still be larger: the gateway sends all n
# choices of a prompt in one request (n <= 8), so a few prompts with n=8 reach 32
# rows. Large batch splitting accepts requests of up to 32 rows and cuts them into
# batches of at most 8, instead of refusing them (a request over max_batch_size is
# an error without splitting) or running one 32-row decoding loop: the pieces of a
# big request run on both batch threads at once, and a small request's rows fill
# the open batch beside them rather than queueing behind a loop four times as
# wide, whose per-step cost on CPU grows with its rows.
DECODING = Batching(max_batch_size=32, batch_timeout_micros=10_000, max_enqueued_batches=32,
                    allowed_batch_sizes=(1, 8), enable_large_batch_splitting=True,
                    max_execution_batch_size=8)


def parse_batching(text):
    """The BatchingParameters message of a text file's contents."""
    return text_format.Parse(text, BatchingParameters())

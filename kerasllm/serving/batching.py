"""TF Serving's batching parameters as a protocol buffer, written as the text files the
server reads (`--batching_parameters_file`, and per version
`assets.extra/batching_params.pbtxt` with `--enable_per_model_batching_parameters`).

The `tensorflow.serving.BatchingParameters` message is not part of the
tensorflow-serving-api package, so its first seven fields (those kerasllm sets)
are declared here under the server's own package, names, numbers and types
(tensorflow_serving/servables/tensorflow/session_bundle_config.proto): the text
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
            (7, "pad_variable_length_inputs", field.TYPE_BOOL, None, None)]:
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

    def to_proto(self):
        # Wrapper fields as dicts: the message lives in its own descriptor pool.
        return BatchingParameters(
            max_batch_size={"value": self.max_batch_size},
            batch_timeout_micros={"value": self.batch_timeout_micros},
            max_enqueued_batches={"value": self.max_enqueued_batches},
            num_batch_threads={"value": self.num_batch_threads},
            allowed_batch_sizes=list(self.allowed_batch_sizes),
            pad_variable_length_inputs=self.pad_variable_length_inputs)

    def to_text(self):
        return text_format.MessageToString(self.to_proto())


# A request of a decoding signature (generation, translation) runs a loop of up to
# its most new tokens, so batches stay small and may wait a little longer for company.
DECODING = Batching(max_batch_size=8, batch_timeout_micros=10_000, max_enqueued_batches=32,
                    allowed_batch_sizes=(1, 8))


def parse_batching(text):
    """The BatchingParameters message of a text file's contents."""
    return text_format.Parse(text, BatchingParameters())

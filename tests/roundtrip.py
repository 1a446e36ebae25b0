"""The configuration round trip every serializable layer and model must survive."""
import keras


def config_roundtrip(obj):
    """`obj` serialized and rebuilt the way Keras saves it; the clone's config must
    equal the original's."""
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert type(clone) is type(obj)
    assert clone.get_config() == obj.get_config()
    return clone

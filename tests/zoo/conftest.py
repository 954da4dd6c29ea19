import keras

SMALL = dict(num_hiddens=32, num_residual_hiddens=16, num_residual_layers=1, embedding_dim=16, num_embeddings=128)


def train_on_real_images(model_class, steps):
    """Fits a small `model_class` on the bundled real CIFAR-10 sample: (validation logs before, after)."""
    from training.data import load_image_data

    data = load_image_data("cifar10_sample", batch_size=32, seed=0)
    model = model_class(data_variance=data.data_variance, **SMALL)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = model.evaluate(data.validation, verbose=0, return_dict=True)
    model.fit(data.train, steps_per_epoch=steps, epochs=1, verbose=0)
    return before, model.evaluate(data.validation, verbose=0, return_dict=True)

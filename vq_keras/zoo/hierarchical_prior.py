import keras
from keras import ops


from vq_keras.layers._validation import require_number, require_positive_int, takes_numpy_scalars
from vq_keras.models.autoregressive_prior import AutoregressivePrior, check_sampling_method
from vq_keras.models.pairing import checked_identity
from vq_keras.models.prior import Prior
from vq_keras.zoo._common import PresetMixin, require_one_code_per_position
from vq_keras.zoo._registry import prior_class


@keras.saving.register_keras_serializable(package="vq_keras")
class HierarchicalPrior(PresetMixin, keras.Model):
    """The priors of a VQ-VAE-2's code levels, top first, sampled top-down.

    `priors[0]` models the top grid on its own (in the paper with attention);
    each lower `priors[i]` is conditioned on the codes of the level above
    (`condition_num_embeddings` = the level above's `num_embeddings`, and
    `condition_upsampling` = how much finer its grid is). Class-conditional
    priors (num_classes) receive the same labels at every level.

    Training: every level's prior trains on its own with `model.fit`, e.g.
    `priors[1].fit(dataset of {"codes": bottom, "condition": top})`; the
    levels share no weights. Calling the model runs every prior on the true
    codes of the level above (teacher forcing), e.g. for evaluation. Saving a
    HierarchicalPrior keeps every level's weights, not the levels' optimizers
    (save a prior on its own to resume its training).

    Args:
        priors: a list of priors (`vq_keras.models.Prior`s, e.g.
            `PixelCNNPrior`s), top first, at least two.
        downsampling: optional image size over the top grid size (the
            autoencoder's `downsampling`, 8 for `VQVAE2.from_preset("cifar10")`),
            so that `sample(image_size=...)` can find the grid sizes.
        trained_on: None, or the `autoencoder_identity` of the VQVAE2 whose codes
            the levels were trained on (stage 2 records it), as in `Prior`.
        **kwargs: standard `keras.Model` arguments.

    Call arguments:
        codes: a list of int code grids, top first, (batch, h_i, w_i).
        labels: int (batch,) class labels, if the priors are class-conditional.
        training: whether dropout is active.

    Input shape:
        codes: [(batch, h_0, w_0), (batch, h_1, w_1), ...], each grid
        condition_upsampling times the one above; labels: (batch,).

    Output shape:
        A list of float32 logits (batch, h_i, w_i, num_embeddings_i), top first.

    Example:
        >>> vqvae2 = VQVAE2.from_preset("cifar10")
        >>> prior = HierarchicalPrior.from_autoencoder(vqvae2, "pixelcnn", num_attention_layers=2)
        >>> top, bottom = vqvae2.encode(images)
        >>> for level_prior in prior.priors:
        ...     level_prior.compile(optimizer=keras.optimizers.Adam(3e-4))
        >>> prior.priors[0].fit(tf.data.Dataset.from_tensor_slices({"codes": top}).batch(32))
        >>> prior.priors[1].fit(
        ...     tf.data.Dataset.from_tensor_slices({"codes": bottom, "condition": top}).batch(32))
        >>> top, bottom = prior.sample(16, seed=0, image_size=(32, 32))
        >>> images = vqvae2.decode([top, bottom])

    Reference:
        Razavi, van den Oord, Vinyals, "Generating Diverse High-Fidelity Images
        with VQ-VAE-2", 2019, arXiv:1906.00446, section 3.3 and algorithm 2.
    """

    PRESET_FILE = "prior.keras"  # trained presets only: the zoo entries (from_preset)

    @takes_numpy_scalars
    def __init__(self, priors, downsampling=None, trained_on=None, **kwargs):
        super().__init__(**kwargs)
        name = "HierarchicalPrior"
        self.trained_on = checked_identity(name, trained_on)
        priors = list(priors) if isinstance(priors, (list, tuple)) else priors
        if not isinstance(priors, list) or len(priors) < 2:
            raise ValueError(
                f"{name} expects a list of at least two priors, top first. Received: "
                f"priors={priors!r}. For a single code grid use a PixelCNNPrior on its own."
            )
        for i, prior in enumerate(priors):
            if not isinstance(prior, Prior):
                raise TypeError(
                    f"{name} expects priors (vq_keras.models.Prior instances, e.g. PixelCNNPrior). "
                    f"Received: priors[{i}] of type {type(prior).__name__}"
                )
        if priors[0].condition_num_embeddings is not None:
            raise ValueError(
                f"{name} expects the top prior (priors[0]) to be unconditioned on codes, with "
                f"condition_num_embeddings=None. Received: "
                f"condition_num_embeddings={priors[0].condition_num_embeddings}"
            )
        for i in range(1, len(priors)):
            if priors[i].condition_num_embeddings != priors[i - 1].num_embeddings:
                raise ValueError(
                    f"{name} expects each lower prior to be conditioned on the codes of the level "
                    f"above: priors[{i}].condition_num_embeddings must equal priors[{i - 1}]."
                    f"num_embeddings={priors[i - 1].num_embeddings}. Received: "
                    f"condition_num_embeddings={priors[i].condition_num_embeddings}"
                )
        classes = {prior.num_classes for prior in priors}
        if len(classes) > 1:
            raise ValueError(
                f"{name} expects every level to use the same labels: the same num_classes "
                f"for all priors. Received: num_classes={[p.num_classes for p in priors]}"
            )
        if downsampling is not None:
            require_positive_int(name, "downsampling", downsampling)
        self.priors = priors
        self.downsampling = downsampling
        if all(prior.built for prior in priors):
            # Built parts make a built whole, so saving it right away keeps every weight.
            self.build_if_needed()

    @classmethod
    def from_autoencoder(cls, autoencoder, prior="pixelcnn", grid_shape=None, **arguments):
        """One prior per code level of a `VQVAE2`, top first.

        Each level's prior is of kind `prior` (a name in `vq_keras.zoo.PRIORS`:
        "pixelcnn", "transformer") and models `autoencoder.num_embeddings`
        codes; each lower one is conditioned on the level above, upsampled by
        2 (VQVAE2's level ratio). `grid_shape` is the top grid's (height,
        width), each lower grid twice the one above (a TransformerPrior needs
        it). `arguments` go to every level's constructor (num_layers,
        num_classes, dropout, ...); for "pixelcnn", `num_attention_layers`
        (default 2) goes to the top level only, as in the paper.
        """
        levels = list(getattr(autoencoder, "level_names", ()))
        if len(levels) < 2:
            raise ValueError(
                "HierarchicalPrior.from_autoencoder expects an autoencoder with several code "
                f"levels (a VQVAE2). Received: {type(autoencoder).__name__} with {len(levels)} "
                "level(s). For a VQVAE use one prior (e.g. PixelCNNPrior)."
            )
        require_one_code_per_position(autoencoder, "HierarchicalPrior.from_autoencoder")
        prior_type = prior_class(prior)
        top_only = {"num_attention_layers": arguments.pop("num_attention_layers", 2)} if prior == "pixelcnn" else {}
        priors = []
        for i, level in enumerate(levels):
            shape = None if grid_shape is None else tuple(s * 2**i for s in grid_shape)
            upper = {} if i == 0 else {"condition_num_embeddings": autoencoder.num_embeddings, "condition_upsampling": 2}
            priors.append(
                prior_type(
                    num_embeddings=autoencoder.num_embeddings, grid_shape=shape, **arguments,
                    **(top_only if i == 0 else {}), **upper, name=f"{level}_prior",
                )
            )
        return cls(priors, downsampling=autoencoder.downsampling)

    def build(self, codes_shape=None, labels_shape=None):
        for prior in self.priors:
            prior.build_if_needed()

    def build_if_needed(self):
        """Builds every level's prior (no weight depends on the grid sizes)."""
        if not self.built:
            self.build()

    def __call__(self, codes, *args, **kwargs):
        # Checked here, not in call(), so the message reaches the user unwrapped.
        if not isinstance(codes, (list, tuple)) or len(codes) != len(self.priors):
            received = f"a list of {len(codes)}" if isinstance(codes, (list, tuple)) else type(codes).__name__
            raise ValueError(
                f"HierarchicalPrior expects a list of {len(self.priors)} code grids, top first. Received: {received}"
            )
        return super().__call__(codes, *args, **kwargs)

    def call(self, codes, labels=None, training=None):
        return [
            prior(level, labels=labels, condition=codes[i - 1] if i else None, training=training)
            for i, (prior, level) in enumerate(zip(self.priors, codes))
        ]

    def grid_shapes(self, image_size=None, grid_shape=None):
        """(height, width) of every level's grid, top first, from the image size
        (needs `downsampling`), the top grid_shape, or the top prior's grid_shape."""
        if image_size is not None:
            if self.downsampling is None:
                raise ValueError(
                    "HierarchicalPrior needs downsampling (image size / top grid size) to find the "
                    "grids for an image_size. Received: downsampling=None. Pass grid_shape=(h, w) "
                    "for the top grid, or build it with downsampling=... (from_autoencoder sets it)."
                )
            height, width = image_size
            if height % self.downsampling or width % self.downsampling:
                raise ValueError(
                    f"HierarchicalPrior expects image sizes that are multiples of downsampling="
                    f"{self.downsampling}. Received: image_size={tuple(image_size)}"
                )
            top = (height // self.downsampling, width // self.downsampling)
            if grid_shape is not None and tuple(grid_shape) != top:
                raise ValueError(
                    f"HierarchicalPrior: grid_shape={tuple(grid_shape)} does not match "
                    f"image_size={tuple(image_size)} / downsampling={self.downsampling}. Pass one of them."
                )
        else:
            top = grid_shape or self.priors[0].grid_shape
            if top is None:
                raise ValueError(
                    "HierarchicalPrior.sample needs the grid size. Received: image_size=None and "
                    "grid_shape=None, and the top prior has no grid_shape. Pass image_size=(H, W)."
                )
        shapes = [tuple(top)]
        for prior in self.priors[1:]:
            shapes.append(tuple(s * prior.condition_upsampling for s in shapes[-1]))
        return shapes

    def sample(
        self, num, labels=None, temperature=1.0, seed=0, image_size=None, grid_shape=None, method=None,
        top_k=None, top_p=None, num_steps=None, guidance=None,
    ):
        """Samples every level top-down: the top grid, then each lower grid
        conditioned on the one above. Level i uses the stateless key (seed, i).

        Args:
            num: the number of samples.
            labels: int class labels (num,) or one int, for class-conditional priors.
            temperature: > 0, the softmax temperature of every level.
            seed: an int in [0, 2**31).
            image_size: (height, width) of the images to generate (needs
                `downsampling`); or give the top `grid_shape`; by default the
                top prior's grid_shape.
            grid_shape: (height, width) of the top grid.
            method: the autoregressive levels' method: "cached" (None, the
                default) or "full", as in `Prior.sample`; both draw the same codes.
            top_k, top_p: the sampling filters of every level, as in `Prior.sample`.
            num_steps: the masked levels' parallel steps (None: each prior's own).
            guidance: the classifier-free guidance scale of the levels trained
                with label_dropout, as in `Prior.sample` (the others sample unguided).

        Returns:
            A list of int32 code grids (num, h_i, w_i), top first.
        """
        require_number("HierarchicalPrior.sample", "temperature", temperature, low=0, low_inclusive=False)
        self._check_level_options(method, num_steps)
        self.check_guidance("HierarchicalPrior.sample", guidance, labels is not None)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
            raise ValueError(
                f"HierarchicalPrior.sample expects seed to be an integer in [0, 2**31). Received: seed={seed!r}"
            )
        shapes = self.grid_shapes(image_size, grid_shape)
        codes = []
        for level, prior in enumerate(self.priors):
            codes.append(
                prior.sample(
                    num,
                    labels=labels,
                    condition=codes[-1] if codes else None,
                    temperature=temperature,
                    seed=(seed, level),
                    grid_shape=shapes[level],
                    top_k=top_k,
                    top_p=top_p,
                    guidance=self._level_guidance(prior, guidance),
                    **self._level_options(prior, method, num_steps),
                )
            )
        return codes

    def _check_level_options(self, method, num_steps):
        """Refuses a method when no level is autoregressive, and num_steps when none is masked."""
        autoregressive = [isinstance(prior, AutoregressivePrior) for prior in self.priors]
        if method is not None:
            if not any(autoregressive):
                raise ValueError(
                    "HierarchicalPrior.sample: method applies to autoregressive levels, and this prior has none. "
                    f"Received: method={method!r}. Leave it out."
                )
            check_sampling_method("HierarchicalPrior.sample", method)
        if num_steps is not None and all(autoregressive):
            raise ValueError(
                "HierarchicalPrior.sample: num_steps is the number of parallel steps of masked levels "
                f"(MaskGITPrior), and every level of this prior is autoregressive. Received: num_steps={num_steps!r}"
            )

    def check_guidance(self, owner, guidance, has_labels):
        """Refuses a guidance scale that no level can use (see `Prior.check_guidance`)."""
        guided = [prior for prior in self.priors if prior.label_dropout]
        (guided or self.priors)[0].check_guidance(owner, guidance, has_labels)

    @staticmethod
    def _level_guidance(prior, guidance):
        """The guidance of one level: none for a level trained without label_dropout."""
        return guidance if prior.label_dropout else None

    @staticmethod
    def _level_options(prior, method, num_steps):
        """The sampling option a level takes: its method if autoregressive, else num_steps."""
        return {"method": method} if isinstance(prior, AutoregressivePrior) else {"num_steps": num_steps}

    @property
    def num_classes(self):
        """The classes every level is conditioned on (None: unconditional)."""
        return self.priors[0].num_classes

    def draw_levels(
        self, num, grid_shapes, labels, temperature, seed, method=None, top_k=None, top_p=None, num_steps=None,
        guidance=None,
    ):
        """`sample` as graph ops (see `Prior.draw`): int32 scalar `seed`, the
        grids of every level, top first; the codes of `sample(seed=seed)`."""
        codes = []
        for level, (prior, shape) in enumerate(zip(self.priors, grid_shapes)):
            key = ops.stack([ops.cast(seed, "int32"), ops.convert_to_tensor(level, "int32")])
            condition = codes[-1] if codes else None
            options = self._level_options(prior, method, num_steps)
            codes.append(
                prior.draw(
                    num, shape, labels, condition, temperature, key, top_k=top_k, top_p=top_p,
                    guidance=self._level_guidance(prior, guidance), **options,
                )
            )
        return codes

    def get_config(self):
        priors = []
        for prior in self.priors:
            # Architecture only: build() rebuilds every prior from its config, and
            # each prior's optimizer belongs to its own .keras file.
            config = keras.saving.serialize_keras_object(prior)
            config.pop("build_config", None)
            config.pop("compile_config", None)
            priors.append(config)
        return {
            "name": self.name, "trainable": self.trainable, "priors": priors, "downsampling": self.downsampling,
            "trained_on": self.trained_on,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["priors"] = [keras.saving.deserialize_keras_object(prior) for prior in config["priors"]]
        return cls(**config)

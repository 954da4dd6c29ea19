"""The tests' small model sizes, in one table: a test that needs an untrained autoencoder fast
takes one of these instead of writing its own."""

# 8 channels, 4-dimensional codes, 16 of them: the smallest VQVAE / VQVAE2 that trains in a step.
TINY_AUTOENCODER = dict(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, embedding_dim=4, num_embeddings=16)
# Twice the width, 32 codes: for tests that compare outputs and want them less degenerate.
SMALL_AUTOENCODER = dict(
    num_hiddens=16, num_residual_hiddens=8, num_residual_layers=1, embedding_dim=8, num_embeddings=32
)

# The smallest prior of each kind in vq_keras.zoo.PRIORS (pass num_embeddings, grid_shape, ...).
TINY_PRIORS = dict(
    pixelcnn=dict(num_layers=2, num_filters=8, kernel_size=3),
    transformer=dict(num_layers=2, hidden_dim=16, num_heads=2),
    maskgit=dict(num_layers=2, hidden_dim=16, num_heads=2),
)

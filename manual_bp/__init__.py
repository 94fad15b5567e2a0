"""manual_bp: backpropagation derived by hand, in numpy.

Conventions, fixed for the whole package:

* samples are rows: X is (m, n); one-hot labels Y are (m, k);
* losses are means over the m samples;
* outputs keep the input's floating dtype (float32 stays float32); integer input becomes float64;
* relu'(0) = 0;
* bad input raises ``ValueError``/``TypeError`` naming the argument and shapes; nothing is
  broadcast silently and nothing mutates its inputs.

Every gradient here is checked against ``jax.grad`` by the ``verification`` package.
"""

from manual_bp.activations import (
    relu as relu,
    relu_grad as relu_grad,
    sigmoid as sigmoid,
    sigmoid_grad as sigmoid_grad,
    softmax as softmax,
    softmax_jacobian as softmax_jacobian,
    softmax_vjp as softmax_vjp,
)
from manual_bp.hvp import (
    logreg_gnvp as logreg_gnvp,
    logreg_hvp as logreg_hvp,
    mlp_gnvp as mlp_gnvp,
    mlp_hvp as mlp_hvp,
)
from manual_bp.labels import one_hot as one_hot
from manual_bp.linear import linear as linear, linear_backward as linear_backward
from manual_bp.logreg import (
    LogRegParams as LogRegParams,
    logreg_loss_and_grads as logreg_loss_and_grads,
    logreg_predict_proba as logreg_predict_proba,
)
from manual_bp.losses import (
    binary_cross_entropy as binary_cross_entropy,
    binary_cross_entropy_grad as binary_cross_entropy_grad,
    cross_entropy as cross_entropy,
    cross_entropy_grad as cross_entropy_grad,
    sigmoid_binary_cross_entropy as sigmoid_binary_cross_entropy,
    sigmoid_binary_cross_entropy_grad as sigmoid_binary_cross_entropy_grad,
    softmax_cross_entropy as softmax_cross_entropy,
    softmax_cross_entropy_grad as softmax_cross_entropy_grad,
)
from manual_bp.network import (
    MLPCache as MLPCache,
    MLPIntermediates as MLPIntermediates,
    MLPParams as MLPParams,
    init_mlp as init_mlp,
    mlp_backward as mlp_backward,
    mlp_backward_intermediates as mlp_backward_intermediates,
    mlp_forward as mlp_forward,
    mlp_loss_and_grads as mlp_loss_and_grads,
)
from manual_bp.optim import sgd_step as sgd_step

__all__ = [
    "LogRegParams",
    "MLPCache",
    "MLPIntermediates",
    "MLPParams",
    "binary_cross_entropy",
    "binary_cross_entropy_grad",
    "cross_entropy",
    "cross_entropy_grad",
    "init_mlp",
    "linear",
    "linear_backward",
    "logreg_gnvp",
    "logreg_hvp",
    "logreg_loss_and_grads",
    "logreg_predict_proba",
    "mlp_backward",
    "mlp_backward_intermediates",
    "mlp_forward",
    "mlp_gnvp",
    "mlp_hvp",
    "mlp_loss_and_grads",
    "one_hot",
    "relu",
    "relu_grad",
    "sgd_step",
    "sigmoid",
    "sigmoid_binary_cross_entropy",
    "sigmoid_binary_cross_entropy_grad",
    "sigmoid_grad",
    "softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
    "softmax_jacobian",
    "softmax_vjp",
]
__version__ = "0.1.0"

// Python bindings of the fused compositing kernel (see compositing_kernel.cu for the maths).
#include <torch/extension.h>

#include <optional>
#include <vector>

std::vector<at::Tensor> composite_forward_cuda(const at::Tensor& sigma, const at::Tensor& t,
                                               const at::Tensor& values,
                                               const std::optional<at::Tensor>& far,
                                               double last_delta);

std::vector<at::Tensor> composite_backward_cuda(const at::Tensor& sigma, const at::Tensor& t,
                                                const at::Tensor& values,
                                                const std::optional<at::Tensor>& far,
                                                const at::Tensor& grad_out, const at::Tensor& grad_weights,
                                                const at::Tensor& grad_opacity, const at::Tensor& grad_dist,
                                                bool need_values_grad, bool need_far_grad,
                                                double last_delta);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "viewseg fused volume-rendering compositing (CUDA)";
  m.def("forward", &composite_forward_cuda,
        "(sigma [R,S], t [R,S], values [R,S,C], far [R] | None, last_delta) -> "
        "[out [R,C], weights [R,S], opacity [R], dist_sum [R]]",
        py::arg("sigma"), py::arg("t"), py::arg("values"), py::arg("far"), py::arg("last_delta"));
  m.def("backward", &composite_backward_cuda,
        "gradients of forward -> [grad_sigma, grad_t, grad_values | None, grad_far | None]",
        py::arg("sigma"), py::arg("t"), py::arg("values"), py::arg("far"), py::arg("grad_out"),
        py::arg("grad_weights"), py::arg("grad_opacity"), py::arg("grad_dist"),
        py::arg("need_values_grad"), py::arg("need_far_grad"), py::arg("last_delta"));
}

"""The EasyNet-3D Gradio app: one module per tab plus the model registry, job runner, workspace and figures."""

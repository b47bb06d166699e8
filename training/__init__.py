"""Training, evaluation and export entry points of viewseg, with their YAML configs."""

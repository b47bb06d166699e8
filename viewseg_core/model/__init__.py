"""The ViewSeg model: encoder, semantic field, renderer, losses and local weight loading."""
from viewseg_core.model.encoder import ENCODER_NAMES, NORM_MODES, Encoder, build_encoder, convert_norm
from viewseg_core.model.field import FieldConfig, SemanticField, SourceViews
from viewseg_core.model.losses import LossConfig, viewseg_losses
from viewseg_core.model.renderer import PassOutput, Renderer, RendererConfig, RayOutput
from viewseg_core.model.viewseg import ModelConfig, ViewSeg, build_model
from viewseg_core.model.weights import (load_backbone_weights, load_encoder_weights, load_model,
                                        model_checkpoint, model_from_checkpoint, save_encoder, save_model)

__all__ = ["ENCODER_NAMES", "NORM_MODES", "Encoder", "build_encoder", "convert_norm", "FieldConfig",
           "SemanticField", "SourceViews", "LossConfig", "viewseg_losses", "PassOutput", "Renderer",
           "RendererConfig", "RayOutput", "ModelConfig", "ViewSeg", "build_model", "load_backbone_weights",
           "load_encoder_weights", "load_model", "model_checkpoint", "model_from_checkpoint",
           "save_encoder", "save_model"]

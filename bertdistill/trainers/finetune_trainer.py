"""`FineTuneTrainer`: the plain `Trainer` with our model card; fine-tunes teachers and no-distillation baselines."""

from __future__ import annotations

from transformers import PreTrainedModel, Trainer

from ..model_card import ModelCardMixin


class FineTuneTrainer(ModelCardMixin, Trainer):
    """A `transformers.Trainer` whose model card names `base_model_name` and lists GLUE dev metrics.

    Args:
        base_model_name (`str`, *optional*): the checkpoint the model was fine-tuned from, for the card.
        **kwargs: everything `Trainer` takes.
    """

    method_name = "fine-tuning"

    def __init__(self, *args, base_model_name: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.base_model_name = base_model_name

    def card_model(self) -> PreTrainedModel:
        model = self.accelerator.unwrap_model(self.model)
        # A LoRA run is a PeftModel until merged; describe the underlying transformer.
        return model.get_base_model() if hasattr(model, "get_base_model") else model

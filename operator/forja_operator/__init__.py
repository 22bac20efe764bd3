"""forja operator: TrainingJob -> ModelVersion -> InferenceService."""

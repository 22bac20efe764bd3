"""Step 4: knowledge distillation as a Keras model with a custom ``train_step``.

Multi-label outputs are independent sigmoids, so the soft loss is the KL
divergence between per-class Bernoulli distributions of the teacher and the
student, both softened by the temperature T (logits / T), scaled by T**2 so its
gradients keep their size as T changes (Hinton et al.). Computed as
``BCE(p_t, s/T) - BCE(p_t, t/T)`` (cross-entropy minus the teacher's entropy),
which is numerically stable. The total is ``alpha * hard + (1 - alpha) * soft``
with the hard loss the BCE of the student's logits against the labels.

The teacher sees the batch at its own resolution; the student sees it resized to
its own.
"""

from __future__ import annotations

from typing import Any

from forja_trainer_tf.tfenv import keras, tf

__all__ = ["Distiller", "soft_kl_loss"]


def soft_kl_loss(teacher_logits: tf.Tensor, student_logits: tf.Tensor, t: float) -> tf.Tensor:
    p = tf.sigmoid(teacher_logits / t)
    cross = tf.nn.sigmoid_cross_entropy_with_logits(labels=p, logits=student_logits / t)
    entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=p, logits=teacher_logits / t)
    return tf.reduce_mean(cross - entropy, axis=-1) * (t * t)


class Distiller(keras.Model):  # type: ignore[misc]
    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model,
        *,
        alpha: float,
        temperature: float,
        student_size: int,
    ) -> None:
        super().__init__(name="distiller")
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.alpha = alpha
        self.temperature = temperature
        self.student_size = student_size
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.hard_tracker = keras.metrics.Mean(name="hard_loss")
        self.soft_tracker = keras.metrics.Mean(name="soft_loss")

    @property
    def metrics(self) -> list[Any]:
        return [self.loss_tracker, self.hard_tracker, self.soft_tracker]

    def _student_view(self, images: tf.Tensor) -> tf.Tensor:
        if images.shape[1] == self.student_size and images.shape[2] == self.student_size:
            return images
        return tf.image.resize(images, (self.student_size, self.student_size), antialias=True)

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.student(self._student_view(inputs), training=training)

    def _distill_losses(
        self, images: tf.Tensor, labels: tf.Tensor, training: bool
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        teacher_logits = self.teacher(images, training=False)
        student_logits = self.student(self._student_view(images), training=training)
        hard = tf.reduce_mean(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=student_logits),
            axis=-1,
        )
        soft = soft_kl_loss(teacher_logits, student_logits, self.temperature)
        total = self.alpha * hard + (1.0 - self.alpha) * soft
        # Per-example losses averaged over the global batch (MirroredStrategy-safe).
        return (
            tf.nn.compute_average_loss(total),
            tf.nn.compute_average_loss(hard),
            tf.nn.compute_average_loss(soft),
        )

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        images, labels = data
        with tf.GradientTape() as tape:
            loss, hard, soft = self._distill_losses(images, labels, training=True)
            loss += tf.add_n(self.student.losses) if self.student.losses else 0.0
        variables = self.student.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        self.loss_tracker.update_state(loss)
        self.hard_tracker.update_state(hard)
        self.soft_tracker.update_state(soft)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        images, labels = data
        loss, hard, soft = self._distill_losses(images, labels, training=False)
        self.loss_tracker.update_state(loss)
        self.hard_tracker.update_state(hard)
        self.soft_tracker.update_state(soft)
        return {m.name: m.result() for m in self.metrics}

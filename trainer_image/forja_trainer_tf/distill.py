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
        """Per-example total, hard and soft losses of this replica's batch."""
        teacher_logits = self.teacher(images, training=False)
        student_logits = self.student(self._student_view(images), training=training)
        hard = tf.reduce_mean(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=student_logits),
            axis=-1,
        )
        soft = soft_kl_loss(teacher_logits, student_logits, self.temperature)
        return self.alpha * hard + (1.0 - self.alpha) * soft, hard, soft

    def _track(self, total: tf.Tensor, hard: tf.Tensor, soft: tf.Tensor) -> dict[str, tf.Tensor]:
        # The trackers take this replica's mean, as Keras' compiled losses do: the
        # strategy averages them across replicas, so the figures read the same on
        # one replica or many (the gradient's loss below is scaled instead).
        self.loss_tracker.update_state(tf.reduce_mean(total))
        self.hard_tracker.update_state(tf.reduce_mean(hard))
        self.soft_tracker.update_state(tf.reduce_mean(soft))
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        images, labels = data
        with tf.GradientTape() as tape:
            total, hard, soft = self._distill_losses(images, labels, training=True)
            # Averaged over the global batch, so that the replicas' gradients, summed
            # by the strategy (MirroredStrategy, MultiWorkerMirroredStrategy), are
            # the global batch's mean gradient.
            loss = tf.nn.compute_average_loss(total)
            if self.student.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.student.losses))
        variables = self.student.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        return self._track(total, hard, soft)

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        images, labels = data
        return self._track(*self._distill_losses(images, labels, training=False))

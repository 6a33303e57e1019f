"""fairseq-train that interrupts itself at a known point (used by tests/test_resume.py).

    python tests/interrupting_train.py DATA [fairseq-train options]
    env: INTERRUPT_AT_UPDATE=U  INTERRUPT_SIGNAL=SIGINT|SIGTERM

Runs exactly what the ``fairseq-train`` console script runs (``fairseq_cli.train.cli_main``
with the same argv), with one hook: during update U, once the model's forward pass has
returned (before the loss's backward and the optimizer step), the process sends the signal to
itself. Python raises KeyboardInterrupt at that point for SIGINT (when SIGINT is not ignored);
SIGTERM's default action ends the process before ``os.kill`` returns. No timers, no races: the
interruption always hits the same update at the same place.
"""

import os
import signal
import sys

from fairseq_cli.train import cli_main  # first: it sets up fairseq's log format
from fairseq.trainer import Trainer  # noqa: E402 (after fairseq_cli.train on purpose)

MARKER = "interrupting_train: sending {signal} during update {update}"


def install(update: int, signum: int):
    train_step = Trainer.train_step

    def interrupting_train_step(self, samples, *args, **kwargs):
        if self.get_num_updates() + 1 == update:  # the update this step computes
            def interrupt(module, inputs, output):
                handle.remove()
                print(MARKER.format(signal=signal.Signals(signum).name, update=update),
                      flush=True)
                os.kill(os.getpid(), signum)

            handle = self.model.register_forward_hook(interrupt)
        return train_step(self, samples, *args, **kwargs)

    Trainer.train_step = interrupting_train_step


if __name__ == "__main__":
    install(int(os.environ["INTERRUPT_AT_UPDATE"]), signal.Signals[os.environ["INTERRUPT_SIGNAL"]])
    sys.argv[0] = "fairseq-train"
    sys.exit(cli_main())

"""The Space app of rs_zero_shot: evaluate's gradio widget over the module beside this file."""

from pathlib import Path

import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load(str(Path(__file__).with_name("rs_zero_shot.py")))
launch_gradio_widget(module)

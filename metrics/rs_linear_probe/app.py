"""The Space app of rs_linear_probe: upload training and test features with their labels, get linear-probe or few-
shot accuracy.

`compute` is the app's function (importable without gradio); `python app.py` serves it with gradio.
"""

import json
from pathlib import Path

import evaluate
import numpy as np

MODULE = evaluate.load(str(Path(__file__).with_name("rs_linear_probe.py")))
#: Arrays the uploaded file holds (the metric's arguments).
ARRAYS = ("predictions", "references", "train_features", "train_labels")


def read_arrays(path: str, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays `names` of an uploaded `.npz` (no pickles) or `.json` object of lists; ValueError naming the file
    and what it lacks."""
    if Path(path).suffix == ".json":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    else:
        with np.load(path, allow_pickle=False) as arrays:
            data = {name: arrays[name] for name in arrays.files}
    missing = [name for name in names if name not in data]
    if missing:
        raise ValueError(f"{Path(path).name} lacks {missing}: it must hold the arrays {list(names)}")
    return {name: np.asarray(data[name]) for name in names}


def int_list(text: str) -> list[int]:
    """`"1, 5, 10"` -> `[1, 5, 10]`."""
    return [int(part) for part in text.replace(",", " ").split()]


def compute(path: str, num_classes: int, shots: str = "", seeds: str = "0, 1, 2", options: str = "{}") -> dict:
    """The linear probe's (or, with `shots`, each few-shot k's) metrics (percent) of the test features (N, D) and
    labels (N,) as `predictions` / `references`, fitted on `train_features` / `train_labels`, in `path`; `options`
    is a JSON object of probe settings (epochs, lr, search_rounds, ...)."""
    extra = {"shots": int_list(shots), "seeds": int_list(seeds)} if shots.strip() else {}
    return MODULE.compute(**read_arrays(path, ARRAYS), num_classes=int(num_classes), **extra, **json.loads(options))


def build_demo():
    """The gradio app: the file upload and the options of `compute`, the metrics as JSON."""
    import gradio as gr

    inputs = [gr.File(label=f"arrays {', '.join(ARRAYS)} (.npz or .json)", file_types=[".npz", ".json"],
                      type="filepath"),
              gr.Number(value=10, precision=0, label="num_classes"),
              gr.Textbox(value="", label="shots (empty: the full linear probe; e.g. 1, 4, 16: few-shot)"),
              gr.Textbox(value="0, 1, 2", label="few-shot seeds"),
              gr.Textbox(value="{}", label="probe options (JSON object, e.g. {\"epochs\": 20})")]
    card = Path(__file__).with_name("README.md").read_text(encoding="utf-8").split("---", 2)[-1]
    return gr.Interface(fn=compute, inputs=inputs, outputs=gr.JSON(label="rs_linear_probe"), title="rs_linear_probe",
                        description=MODULE.info.description, article=card)


if __name__ == "__main__":
    build_demo().launch()

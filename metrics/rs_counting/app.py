"""The Space app of rs_counting: upload the 10 count-caption scores of each image and the true counts, get top-k
accuracy and the confusion matrix.

`compute` is the app's function (importable without gradio); `python app.py` serves it with gradio.
"""

import json
from pathlib import Path

import evaluate
import numpy as np

MODULE = evaluate.load(str(Path(__file__).with_name("rs_counting.py")))
#: Arrays the uploaded file holds (the metric's arguments).
ARRAYS = ("predictions", "references")


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


def compute(path: str) -> dict:
    """Top-1..10 accuracy and the confusion matrix of the scores (N, 10) and true counts 1..10 (N,) in `path`."""
    return MODULE.compute(**read_arrays(path, ARRAYS))


def build_demo():
    """The gradio app: the file upload and the options of `compute`, the metrics as JSON."""
    import gradio as gr

    inputs = [gr.File(label=f"arrays {', '.join(ARRAYS)} (.npz or .json)", file_types=[".npz", ".json"],
                      type="filepath")]
    card = Path(__file__).with_name("README.md").read_text(encoding="utf-8").split("---", 2)[-1]
    return gr.Interface(fn=compute, inputs=inputs, outputs=gr.JSON(label="rs_counting"), title="rs_counting",
                        description=MODULE.info.description, article=card)


if __name__ == "__main__":
    build_demo().launch()

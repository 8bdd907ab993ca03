#!/usr/bin/python3
"""Train Maestro's demo models and write their reference fixtures.

Run with Debian's interpreter, which has python3-xgboost and python3-sklearn:

    /usr/bin/python3 examples/models/train.py

Everything is synthetic and seeded, so a rerun with the same library versions
rewrites byte-identical artifacts. The Go tests only read what this script
commits; CI never runs Python.

Outputs (paths relative to the repository root):
  examples/models/<model>/<version>/<artifact>   model artifacts
  examples/models/fixtures/<model>-v<N>.json      inputs + the library's own outputs
  inference/runtime/xgboost/testdata/*.json       extra XGBoost models for the runtime tests
"""

import json
import math
import os
import sys

import numpy as np
import sklearn
import xgboost as xgb
from sklearn.linear_model import LogisticRegression

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "examples", "models")
FIXTURES = os.path.join(MODELS, "fixtures")
XGB_TESTDATA = os.path.join(ROOT, "inference", "runtime", "xgboost", "testdata")

FRAUD_FEATURES = 30
CHURN_FEATURES = 12
CHURN_CLASSES = 3
FIXTURE_ROWS = 50


# ---------------------------------------------------------------- data sets


def fraud_data(rng, n):
    """Transactions: 30 numeric features, about 8% fraud, some values missing."""
    x = rng.normal(size=(n, FRAUD_FEATURES)).astype(np.float32)
    # A few heavy-tailed "amount" style columns.
    x[:, 0] = rng.lognormal(3.0, 1.0, size=n).astype(np.float32)
    x[:, 1] = rng.exponential(2.0, size=n).astype(np.float32)
    z = (
        0.004 * x[:, 0]
        + 0.6 * x[:, 1]
        + 1.1 * x[:, 2] * x[:, 3]
        - 0.9 * np.abs(x[:, 4])
        + 0.8 * (x[:, 5] > 1.0)
        + 0.5 * x[:, 6]
        - 3.2
    )
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    # Missing values: whole features are sometimes absent upstream.
    for col, rate in ((3, 0.10), (6, 0.05), (12, 0.20)):
        x[rng.random(n) < rate, col] = np.nan
    return x, y


def churn_data(rng, n):
    """Subscribers: 12 features, classes 0=stay, 1=downgrade, 2=churn."""
    x = rng.normal(size=(n, CHURN_FEATURES)).astype(np.float32)
    x[:, 0] = rng.integers(1, 72, size=n).astype(np.float32)  # tenure months
    x[:, 1] = rng.uniform(10, 120, size=n).astype(np.float32)  # monthly charge
    s_down = 0.02 * x[:, 1] - 0.03 * x[:, 0] + 0.7 * x[:, 2] - 0.5
    s_churn = 0.03 * x[:, 1] - 0.06 * x[:, 0] + 0.9 * x[:, 3] - 0.6 * x[:, 4] + 0.2
    logits = np.stack([np.zeros(n), s_down, s_churn], axis=1)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random(n)[:, None]
    y = (u > np.cumsum(p, axis=1)).sum(axis=1).astype(np.float32)
    x[rng.random(n) < 0.08, 5] = np.nan
    x[rng.random(n) < 0.15, 7] = np.nan
    return x, y


# ---------------------------------------------------------------- writers


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=False, allow_nan=False)
        f.write("\n")


def flat(values):
    """Row-major list with NaN written as null (JSON has no NaN)."""
    out = []
    for v in np.asarray(values).reshape(-1).tolist():
        if isinstance(v, float) and math.isnan(v):
            out.append(None)
        else:
            out.append(v)
    return out


def tensor(name, datatype, arr):
    arr = np.asarray(arr)
    return {"name": name, "datatype": datatype, "shape": list(arr.shape), "data": flat(arr)}


def write_fixture(path, model, version, inputs, outputs, tolerance=1e-5, note=""):
    write_json(
        path,
        {
            "model_name": model,
            "model_version": str(version),
            "tolerance": tolerance,
            "note": note,
            "inputs": inputs,
            "outputs": outputs,
        },
    )


def write_config(model, text):
    path = os.path.join(MODELS, model, "config.yaml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def save_booster(booster, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    booster.save_model(path)


def fixture_rows(rng, x, n=FIXTURE_ROWS, nan_rows=0, width=None):
    """Pick n held-out rows; force NaN into nan_rows of them."""
    idx = rng.choice(len(x), size=n, replace=False)
    rows = x[idx].copy()
    if nan_rows:
        width = rows.shape[1]
        for r in range(nan_rows):
            rows[r, rng.choice(width, size=1 + r % 4, replace=False)] = np.nan
    return rows


def xgb_predict(booster, rows):
    return booster.predict(xgb.DMatrix(rows, missing=np.nan))


# ---------------------------------------------------------------- demo models


def train_fraud(rng):
    x, y = fraud_data(rng, 20000)
    xt, yt = fraud_data(rng, 2000)
    dtrain = xgb.DMatrix(x, label=y, missing=np.nan)
    versions = {
        1: dict(max_depth=4, eta=0.3, rounds=40),
        2: dict(max_depth=5, eta=0.1, rounds=90, subsample=0.8, colsample_bytree=0.8, min_child_weight=2),
    }
    for version, hp in versions.items():
        params = {
            "objective": "binary:logistic",
            "eval_metric": "auc",
            "tree_method": "hist",
            "seed": 7 + version,
            "nthread": 1,
        }
        rounds = hp.pop("rounds")
        params.update(hp)
        booster = xgb.train(params, dtrain, num_boost_round=rounds)
        save_booster(booster, os.path.join(MODELS, "fraud", str(version), "model.json"))
        rows = fixture_rows(rng, xt, nan_rows=10)
        pred = xgb_predict(booster, rows).reshape(-1, 1)
        write_fixture(
            os.path.join(FIXTURES, f"fraud-v{version}.json"),
            "fraud",
            version,
            [tensor("features", "FP32", rows)],
            [tensor("probability", "FP32", pred.astype(np.float32))],
            note=f"xgboost {xgb.__version__} Booster.predict",
        )
    write_config(
        "fraud",
        """# Card-transaction fraud: XGBoost binary:logistic over 30 numeric features.
# Missing features are allowed (NaN follows each split's default branch).
name: fraud
runtime: xgboost
max_batch_size: 1024
inputs:
  - {name: features, datatype: FP32, shape: [30]}
outputs:
  - {name: probability, datatype: FP32, shape: [1]}
dynamic_batching:
  max_queue_delay_microseconds: 200
  preferred_batch_size: [16, 64]
parameters: {}
""",
    )
    return x, y


def train_fraud_logistic(rng, x, y):
    # The linear runtime refuses NaN, so the model is trained on imputed data
    # and its fixture carries no missing values.
    x = np.nan_to_num(x, nan=0.0)
    # Standardising would hide the raw-feature weights from the JSON; the
    # heavy-tailed column 0 is scaled by the solver's regularisation instead.
    clf = LogisticRegression(C=1.0, max_iter=2000, solver="lbfgs")
    clf.fit(x.astype(np.float64), y)
    artifact = {
        "format": "maestro-linear/v1",
        "num_features": FRAUD_FEATURES,
        "link": "logistic",
        "weights": [[float(w) for w in clf.coef_[0]]],
        "intercept": [float(clf.intercept_[0])],
        "source": f"sklearn {sklearn.__version__} LogisticRegression",
    }
    write_json(os.path.join(MODELS, "fraud-logistic", "1", "model.json"), artifact)
    xt, _ = fraud_data(rng, 500)
    rows = np.nan_to_num(fixture_rows(rng, xt), nan=0.0).astype(np.float32)
    pred = clf.predict_proba(rows.astype(np.float64))[:, 1].reshape(-1, 1)
    write_fixture(
        os.path.join(FIXTURES, "fraud-logistic-v1.json"),
        "fraud-logistic",
        1,
        [tensor("features", "FP32", rows)],
        [tensor("probability", "FP32", pred.astype(np.float32))],
        note=f"sklearn {sklearn.__version__} LogisticRegression.predict_proba[:, 1]",
    )
    write_config(
        "fraud-logistic",
        """# Fraud scored by a logistic regression over the same 30 features as
# `fraud`: the third member of a fraud ensemble. NaN is rejected.
name: fraud-logistic
runtime: linear
max_batch_size: 1024
inputs:
  - {name: features, datatype: FP32, shape: [30]}
outputs:
  - {name: probability, datatype: FP32, shape: [1]}
""",
    )


def train_churn(rng):
    x, y = churn_data(rng, 12000)
    xt, _ = churn_data(rng, 1000)
    dtrain = xgb.DMatrix(x, label=y, missing=np.nan)
    versions = {
        1: dict(max_depth=3, eta=0.3, rounds=25),
        2: dict(max_depth=4, eta=0.15, rounds=45, subsample=0.9, reg_lambda=2.0),
    }
    for version, hp in versions.items():
        params = {
            "objective": "multi:softprob",
            "num_class": CHURN_CLASSES,
            "tree_method": "hist",
            "seed": 11 + version,
            "nthread": 1,
        }
        rounds = hp.pop("rounds")
        params.update(hp)
        booster = xgb.train(params, dtrain, num_boost_round=rounds)
        save_booster(booster, os.path.join(MODELS, "churn", str(version), "model.json"))
        rows = fixture_rows(rng, xt, nan_rows=8)
        prob = xgb_predict(booster, rows).reshape(-1, CHURN_CLASSES).astype(np.float32)
        label = prob.argmax(axis=1).astype(np.int64).reshape(-1, 1)
        write_fixture(
            os.path.join(FIXTURES, f"churn-v{version}.json"),
            "churn",
            version,
            [tensor("features", "FP32", rows)],
            [
                tensor("probabilities", "FP32", prob),
                tensor("class", "INT64", label),
            ],
            note=f"xgboost {xgb.__version__} Booster.predict; class = argmax",
        )
    write_config(
        "churn",
        """# Subscriber churn: XGBoost multi:softprob, classes 0=stay 1=downgrade 2=churn.
# `probabilities` holds the softmax per class, `class` the most likely one.
name: churn
runtime: xgboost
max_batch_size: 256
inputs:
  - {name: features, datatype: FP32, shape: [12]}
outputs:
  - {name: probabilities, datatype: FP32, shape: [3]}
  - {name: class, datatype: INT64, shape: [1]}
dynamic_batching:
  max_queue_delay_microseconds: 500
parameters: {}
""",
    )


def train_recommendations(rng):
    users, items, dim = 1000, 500, 16
    # Ground-truth tastes, observed through a sparse noisy rating matrix.
    tu = rng.normal(scale=0.6, size=(users, dim))
    ti = rng.normal(scale=0.6, size=(items, dim))
    ratings = tu @ ti.T + rng.normal(scale=0.3, size=(users, items))
    mask = rng.random((users, items)) < 0.08
    # Alternating least squares on the observed cells.
    u = rng.normal(scale=0.1, size=(users, dim))
    v = rng.normal(scale=0.1, size=(items, dim))
    reg = 0.1 * np.eye(dim)
    for _ in range(8):
        for a in range(users):
            m = mask[a]
            vm = v[m]
            u[a] = np.linalg.solve(vm.T @ vm + reg, vm.T @ ratings[a, m])
        for b in range(items):
            m = mask[:, b]
            um = u[m]
            v[b] = np.linalg.solve(um.T @ um + reg, um.T @ ratings[m, b])
    u32 = u.astype(np.float32)
    v32 = v.astype(np.float32)
    user_ids = (100000 + np.arange(users)).astype(np.int64)
    item_ids = (5000 + 3 * np.arange(items)).astype(np.int64)
    artifact = {
        "format": "maestro-embedding/v1",
        "dim": dim,
        "user_ids": user_ids.tolist(),
        "item_ids": item_ids.tolist(),
        # float32 values written with 9 significant digits round-trip exactly.
        "users": [[float(f"{w:.9g}") for w in row] for row in u32.tolist()],
        "items": [[float(f"{w:.9g}") for w in row] for row in v32.tolist()],
    }
    write_json(os.path.join(MODELS, "recommendations", "1", "embeddings.json"), artifact)

    k = 10
    pick = rng.choice(users, size=FIXTURE_ROWS, replace=False)
    scores = u32[pick].astype(np.float64) @ v32.astype(np.float64).T
    # Highest score first; ties by lower item index, as the runtime breaks them.
    order = np.lexsort((np.tile(np.arange(items), (FIXTURE_ROWS, 1)), -scores), axis=1)[:, :k]
    top_ids = item_ids[order]
    top_scores = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    write_fixture(
        os.path.join(FIXTURES, "recommendations-v1.json"),
        "recommendations",
        1,
        [tensor("user_id", "INT64", user_ids[pick].reshape(-1, 1))],
        [tensor("item_ids", "INT64", top_ids), tensor("scores", "FP32", top_scores)],
        note="numpy float64 dot products of the float32 embeddings, top 10",
    )
    write_config(
        "recommendations",
        """# Top-k recommendations from user and item embeddings (1,000 users x
# 500 items x 16 dims). Scores are dot products; an unknown user is a 400.
name: recommendations
runtime: embedding
max_batch_size: 256
inputs:
  - {name: user_id, datatype: INT64, shape: [1]}
outputs:
  - {name: item_ids, datatype: INT64, shape: [10]}
  - {name: scores, datatype: FP32, shape: [10]}
parameters:
  k: "10"
""",
    )


# ---------------------------------------------------------------- runtime test models


def regression_data(rng, n, width=6, nan_rate=0.35):
    x = rng.normal(size=(n, width)).astype(np.float32)
    y = (np.sin(x[:, 0]) + 0.5 * x[:, 1] ** 2 - x[:, 2] * (x[:, 3] > 0)).astype(np.float32)
    x[rng.random((n, width)) < nan_rate] = np.nan
    return x, y


def train_test_models(rng):
    """Small models for the objectives the demo does not cover."""
    cases = []

    x, y = regression_data(rng, 3000)
    cases.append(("reg_squarederror", {"objective": "reg:squarederror", "max_depth": 4, "eta": 0.3}, x, y, 20))

    x, y = regression_data(rng, 3000)
    y = 1.0 / (1.0 + np.exp(-y))
    cases.append(("reg_logistic", {"objective": "reg:logistic", "max_depth": 3, "eta": 0.4}, x, y, 15))

    x, y = regression_data(rng, 3000, nan_rate=0.1)
    yb = (y > 0.4).astype(np.float32)
    cases.append(
        ("binary_base_score", {"objective": "binary:logistic", "max_depth": 3, "base_score": 0.3}, x, yb, 10)
    )

    x, y = regression_data(rng, 3000, nan_rate=0.1)
    yc = np.digitize(y, [-0.5, 0.3, 1.2]).astype(np.float32)
    cases.append(("multi_softmax", {"objective": "multi:softmax", "num_class": 4, "max_depth": 3}, x, yc, 8))

    x, y = regression_data(rng, 3000)
    cases.append(
        (
            "random_forest",
            {
                "objective": "reg:squarederror",
                "num_parallel_tree": 4,
                "subsample": 0.7,
                "colsample_bynode": 0.6,
                "max_depth": 3,
                "eta": 1.0,
            },
            x,
            y,
            2,
        )
    )

    for name, params, x, y, rounds in cases:
        params = dict(params, tree_method="hist", seed=3, nthread=1)
        booster = xgb.train(params, xgb.DMatrix(x, label=y, missing=np.nan), num_boost_round=rounds)
        path = os.path.join(XGB_TESTDATA, f"{name}.json")
        save_booster(booster, path)
        rows = x[:FIXTURE_ROWS]
        pred = xgb_predict(booster, rows).astype(np.float32)
        pred = pred.reshape(FIXTURE_ROWS, -1)
        write_fixture(
            os.path.join(XGB_TESTDATA, f"{name}.fixture.json"),
            name,
            1,
            [tensor("x", "FP32", rows)],
            [tensor("y", "FP32", pred)],
            note=f"xgboost {xgb.__version__}, params {json.dumps(params, sort_keys=True)}",
        )

    # Models the runtime must refuse, written by XGBoost itself.
    x, y = regression_data(rng, 500, nan_rate=0.0)
    dtrain = xgb.DMatrix(x, label=y)
    refused = {
        "dart": {"booster": "dart", "rate_drop": 0.1, "max_depth": 2},
        "gblinear": {"booster": "gblinear"},
        "poisson": {"objective": "count:poisson", "max_depth": 2},
    }
    for name, params in refused.items():
        ym = np.abs(y) if name == "poisson" else y
        booster = xgb.train(dict(params, seed=3, nthread=1), xgb.DMatrix(x, label=ym), num_boost_round=2)
        save_booster(booster, os.path.join(XGB_TESTDATA, "refused", f"{name}.json"))
    xc = x.copy()
    xc[:, 0] = rng.integers(0, 5, size=len(xc)).astype(np.float32)
    ycat = np.where(np.isin(xc[:, 0], [1.0, 3.0]), 2.0, -1.0) + 0.1 * y
    dcat = xgb.DMatrix(xc, label=ycat, feature_types=["c"] + ["q"] * (xc.shape[1] - 1), enable_categorical=True)
    booster = xgb.train(
        {"tree_method": "hist", "max_depth": 2, "max_cat_to_onehot": 1, "seed": 3, "nthread": 1},
        dcat,
        num_boost_round=2,
    )
    save_booster(booster, os.path.join(XGB_TESTDATA, "refused", "categorical.json"))


def main():
    if xgb.__version__.split(".")[0] not in ("1", "2"):
        print(f"warning: trained with xgboost {xgb.__version__}; the runtime is tested on 1.x and 2.x", file=sys.stderr)
    rng = np.random.default_rng(20260601)
    x, y = train_fraud(rng)
    train_fraud_logistic(rng, x, y)
    train_churn(rng)
    train_recommendations(rng)
    train_test_models(rng)
    print(f"trained with xgboost {xgb.__version__}, sklearn {sklearn.__version__}, numpy {np.__version__}")


if __name__ == "__main__":
    main()

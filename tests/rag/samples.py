"""Small real source files, one per parsed language, shared by the chunker and retriever tests.

Each sample defines a class (or the language's equivalent) named Greeter with a method `greet`,
and a top-level function `main`, so the expected symbols read the same in every language.
"""

SAMPLES: dict[str, tuple[str, str]] = {
    "python": ("app/greeter.py", '''\
import os


class Greeter:
    """Greets people by name."""

    def greet(self, name):
        message = "hello " + name
        return message.upper()


def main():
    greeter = Greeter()
    print(greeter.greet(os.getlogin()))
'''),
    "javascript": ("web/greeter.js", '''\
import fs from "fs";

class Greeter {
  greet(name) {
    const message = "hello " + name;
    return message.toUpperCase();
  }
}

export function main() {
  const greeter = new Greeter();
  console.log(greeter.greet("world"));
}
'''),
    "typescript": ("web/greeter.ts", '''\
interface Named {
  name: string;
}

export class Greeter {
  greet(who: Named): string {
    const message = "hello " + who.name;
    return message.toUpperCase();
  }
}

export const main = (): void => {
  const greeter = new Greeter();
  console.log(greeter.greet({ name: "world" }));
};
'''),
    "tsx": ("web/Greeter.tsx", '''\
import React from "react";

export class Greeter extends React.Component<{ name: string }> {
  greet(name: string): string {
    const message = "hello " + name;
    return message.toUpperCase();
  }
}

export function main(): JSX.Element {
  const greeting = new Greeter({ name: "x" }).greet("world");
  return <div className="greeting">{greeting}</div>;
}
'''),
    "java": ("src/Greeter.java", '''\
package demo;

public class Greeter {
    public String greet(String name) {
        String message = "hello " + name;
        return message.toUpperCase();
    }

    public static void main(String[] args) {
        Greeter greeter = new Greeter();
        System.out.println(greeter.greet("world"));
    }
}
'''),
    "c": ("src/greeter.c", '''\
#include <stdio.h>

struct Greeter {
    const char *greeting;
    int times;
};

static void greet(const struct Greeter *greeter, const char *name) {
    for (int i = 0; i < greeter->times; i++) {
        printf("%s %s\\n", greeter->greeting, name);
    }
}

int main(void) {
    struct Greeter greeter = {"hello", 2};
    greet(&greeter, "world");
    return 0;
}
'''),
    "cpp": ("src/greeter.cpp", '''\
#include <iostream>
#include <string>

namespace demo {
class Greeter {
 public:
  std::string greet(const std::string &name) const {
    std::string message = "hello " + name;
    return message + "!";
  }
};
}  // namespace demo

int main() {
  demo::Greeter greeter;
  std::cout << greeter.greet("world") << std::endl;
  return 0;
}
'''),
    "go": ("cmd/greeter.go", '''\
package main

import "fmt"

type Greeter struct {
	Greeting string
}

func (g *Greeter) Greet(name string) string {
	message := g.Greeting + " " + name
	return message + "!"
}

func main() {
	greeter := &Greeter{Greeting: "hello"}
	fmt.Println(greeter.Greet("world"))
}
'''),
    "rust": ("src/greeter.rs", '''\
use std::fmt;

pub struct Greeter {
    greeting: String,
}

impl Greeter {
    pub fn greet(&self, name: &str) -> String {
        let message = format!("{} {}", self.greeting, name);
        message.to_uppercase()
    }
}

fn main() {
    let greeter = Greeter { greeting: "hello".to_string() };
    println!("{}", greeter.greet("world"));
}
'''),
    "csharp": ("src/Greeter.cs", '''\
using System;

namespace Demo
{
    public class Greeter
    {
        public string Greet(string name)
        {
            var message = "hello " + name;
            return message.ToUpper();
        }

        public static void Main(string[] args)
        {
            var greeter = new Greeter();
            Console.WriteLine(greeter.Greet("world"));
        }
    }
}
'''),
    "ruby": ("lib/greeter.rb", '''\
require "set"

class Greeter
  def greet(name)
    message = "hello " + name
    message.upcase
  end
end

def main
  greeter = Greeter.new
  puts greeter.greet("world")
end
'''),
    "php": ("src/Greeter.php", '''\
<?php

class Greeter
{
    public function greet(string $name): string
    {
        $message = "hello " . $name;
        return strtoupper($message);
    }
}

function main(): void
{
    $greeter = new Greeter();
    echo $greeter->greet("world");
}
'''),
    "kotlin": ("src/Greeter.kt", '''\
package demo

class Greeter(private val greeting: String) {
    fun greet(name: String): String {
        val message = greeting + " " + name
        return message.uppercase()
    }
}

fun main() {
    val greeter = Greeter("hello")
    println(greeter.greet("world"))
}
'''),
    "bash": ("scripts/greeter.sh", '''\
#!/usr/bin/env bash
set -euo pipefail

greet() {
  local message="hello $1"
  echo "${message^^}"
}

main() {
  greet "world"
  greet "again"
}

main "$@"
'''),
}

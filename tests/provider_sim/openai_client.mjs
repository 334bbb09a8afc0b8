// Drives provider-sim with the official OpenAI Node client: a chat completion with a JSON-schema
// response format, a function call, and an image generation. Prints one JSON line of results.
// Usage: node openai_client.mjs BASE_URL  (run from a directory where `openai` is installed)
import OpenAI from "openai";

const client = new OpenAI({ apiKey: "sim-key", baseURL: process.argv[2], maxRetries: 0 });

const chat = await client.chat.completions.create({
  model: "gpt-4o-mini",
  messages: [
    { role: "system", content: "Categorize the menu lines." },
    { role: "user", content: JSON.stringify({ task: "menu_categories", lines: [
      { line: 0, text: "寿司" }, { line: 1, text: "まぐろ ¥300" }, { line: 2, text: "サーモン ¥280" }] }) },
  ],
  response_format: { type: "json_schema", json_schema: { name: "menu_categories", strict: true, schema: {
    type: "object", additionalProperties: false, required: ["categories"],
    properties: { categories: { type: "array", items: { type: "object", additionalProperties: false,
      required: ["name", "items"], properties: { name: { type: "string" }, items: { type: "array", items: {
        type: "object", additionalProperties: false, required: ["line", "name", "price"],
        properties: { line: { type: "integer" }, name: { type: "string" }, price: { type: "string" } } } } } } } } } } },
});

const tool = await client.chat.completions.create({
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: "What is the weather in Tokyo?" }],
  tools: [{ type: "function", function: { name: "get_weather", parameters: {
    type: "object", properties: { city: { type: "string" }, days: { type: "integer" } }, required: ["city", "days"] } } }],
  tool_choice: "auto",
});

const image = await client.images.generate({ model: "dall-e-3", prompt: "A realistic photo of Tuna (まぐろ)", n: 1, size: "1024x1024" });

console.log(JSON.stringify({
  object: chat.object,
  finish_reason: chat.choices[0].finish_reason,
  categories: JSON.parse(chat.choices[0].message.content).categories,
  usage_total: chat.usage.total_tokens,
  tool_name: tool.choices[0].message.tool_calls[0].function.name,
  tool_arguments: JSON.parse(tool.choices[0].message.tool_calls[0].function.arguments),
  image_url: image.data[0].url,
}));

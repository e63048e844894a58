// int8 activations as lookup tables: see table_kernel.h.
#include "table_kernel.h"

#include "tensorflow/lite/kernels/kernel_util.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

struct TableOpData {
  const int8_t* table;  // indexed by the input's bit pattern: table[(uint8_t)q]
};

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  return context->AllocatePersistentBuffer(context, sizeof(TableOpData));
}

const ActivationTable* FindTable(int op, const TfLiteTensor& input, const TfLiteTensor& output) {
  for (int i = 0; i < kActivationTableCount; ++i) {
    const ActivationTable& t = kActivationTables[i];
    if (t.op == op && t.input_scale == input.params.scale && t.input_zero_point == input.params.zero_point &&
        t.output_scale == output.params.scale && t.output_zero_point == output.params.zero_point) {
      return &t;
    }
  }
  return nullptr;
}

// kOp: the operator this registration stands in for (the kernel is not told otherwise).
template <int kOp>
TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  tflite::MicroContext* micro_context = tflite::GetMicroContext(context);
  TfLiteTensor* input = micro_context->AllocateTempInputTensor(node, 0);
  TfLiteTensor* output = micro_context->AllocateTempOutputTensor(node, 0);
  const ActivationTable* table = nullptr;
  if (input != nullptr && output != nullptr && input->type == kTfLiteInt8 && output->type == kTfLiteInt8 &&
      tflite::NumElements(input) == tflite::NumElements(output)) {
    table = FindTable(kOp, *input, *output);
  }
  if (input != nullptr) micro_context->DeallocateTempTfLiteTensor(input);
  if (output != nullptr) micro_context->DeallocateTempTfLiteTensor(output);
  if (table == nullptr) return kTfLiteError;  // not a node the tables were exported for
  static_cast<TableOpData*>(node->user_data)->table = table->values;
  return kTfLiteOk;
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const int8_t* table = static_cast<const TableOpData*>(node->user_data)->table;
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, 0);
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, 0);
  const int count = tflite::micro::GetTensorShape(input).FlatSize();
  const int8_t* in = tflite::micro::GetTensorData<int8_t>(input);
  int8_t* out = tflite::micro::GetTensorData<int8_t>(output);
  for (int i = 0; i < count; ++i) out[i] = table[static_cast<uint8_t>(in[i])];
  return kTfLiteOk;
}

}  // namespace

TFLMRegistration Register_TABLE_LOGISTIC() {
  return tflite::micro::RegisterOp(Init, Prepare<tflite::BuiltinOperator_LOGISTIC>, Eval);
}

TFLMRegistration Register_TABLE_TANH() {
  return tflite::micro::RegisterOp(Init, Prepare<tflite::BuiltinOperator_TANH>, Eval);
}
